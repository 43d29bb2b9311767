"""How a session fills its places: prompts on the server, and jobs still being stored."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from generation.engine.session import Session


class _Client:
    async def close(self) -> None:
        pass


def _run(*, jobs: int, concurrency: int, report_end: bool) -> dict:
    """Drive ``jobs`` jobs whose prompts end at once and whose storing takes a while; returns
    what the claims were told and how many jobs were live (and on the server) at most."""
    waiting = list(range(2, jobs + 1))
    seen = {"live": 0, "on_server": 0, "ended_at_claim": []}
    live: set[int] = set()
    on_server: set[int] = set()

    async def claim_next(client_id: str, ended: frozenset[int]) -> SimpleNamespace | None:
        seen["ended_at_claim"].append(sorted(ended))
        if not waiting:
            return None
        return SimpleNamespace(job_id=waiting.pop(0), backend_url="http://gpu")

    async def drive(claim: SimpleNamespace, connection: object, on_ended) -> str:
        live.add(claim.job_id)
        on_server.add(claim.job_id)
        seen["live"] = max(seen["live"], len(live))
        seen["on_server"] = max(seen["on_server"], len(on_server))
        await asyncio.sleep(0.01)  # the prompt runs
        on_server.discard(claim.job_id)
        if report_end:
            on_ended()
        await asyncio.sleep(0.03)  # its outputs are fetched and stored
        live.discard(claim.job_id)
        return f"done {claim.job_id}"

    async def main() -> dict[int, str]:
        session = Session(
            connect=lambda url, cid: _Client(),
            claim_next=claim_next,
            drive=drive,
            concurrency=concurrency,
            max_jobs=100,
            max_seconds=60,
        )
        return await session.run(SimpleNamespace(job_id=1, backend_url="http://gpu"))

    seen["outcomes"] = asyncio.run(main())
    return seen


def test_a_job_whose_prompt_ended_frees_its_place_for_the_next_while_it_is_stored():
    seen = _run(jobs=6, concurrency=1, report_end=True)
    assert seen["outcomes"] == {n: f"done {n}" for n in range(1, 7)}
    assert seen["on_server"] == 1  # never more prompts than the session's places
    # The next jobs run while the last ones are stored: storing (30 ms) outlasts a prompt (10 ms),
    # so two jobs are being stored when the third prompt runs, and no more.
    assert seen["live"] == 3
    assert [1] in seen["ended_at_claim"]  # the claim is told job 1 no longer holds a place


def test_jobs_being_stored_are_bounded_by_the_sessions_places():
    seen = _run(jobs=12, concurrency=2, report_end=True)
    assert len(seen["outcomes"]) == 12
    assert seen["on_server"] == 2
    assert seen["live"] == 6  # two on the server and at most four more being stored


def test_without_an_end_report_a_place_frees_only_when_its_job_is_done():
    seen = _run(jobs=4, concurrency=1, report_end=False)
    assert len(seen["outcomes"]) == 4
    assert seen["live"] == 1
    assert all(ended == [] for ended in seen["ended_at_claim"])
