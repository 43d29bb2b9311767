"""Orchestration overhead benchmark (issue 18 item 8): a phase's gate passing → the next phase's prompt running.

python bench/orchestration.py [--orchestrations 5] [--keep]

Runs Tower as production does (``bench/_common.TowerEnvironment``: a temporary SQLite file in WAL
mode or ``DATABASE_URL``, the embedded Redis or ``REDIS_URL``, ``manage.py qcluster`` with
Tower's default workers) against one fake ComfyUI process (``bench/_fake.py``, no compute). A
character with one reference runs ``--orchestrations`` orchestrations, one after another, with
``auto_advance`` on the weightless templates; the project's ``advance_unevaluated`` is on, since
no metric weights are here and every gate is "not evaluated" (the gate's own cost is not what is
measured). Scoring, the step and the next submission run on the qcluster's workers, as in
production.

Measured per handover (phase 1 → 2 and 2 → 3 of each orchestration), as
``quality.services.orchestration`` names its entry points: from the passed ``PhaseRun.finished_at``
(stamped by ``orchestration_step`` in the transaction that creates the next phase's first job) to
``execution_start`` of that job's prompt in the fake's history (the prompt running in ComfyUI).
Baseline in the same run: a plain job on the same template with the same image input, from the
``jobs_create`` call to its prompt's ``execution_start``. Prints one table; exits 1 when the
median handover is over 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    FakeProcess,
    Row,
    TowerEnvironment,
    exit_on_sigterm,
    median,
    print_table,
    shipped,
    wait_until,
)

TARGET_MS = 1000.0
WEIGHTLESS = {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"}
ENDED = ("complete", "failed", "cancelled")


def reference_png() -> bytes:
    from PIL import Image

    image = Image.new("RGB", (256, 256), (200, 180, 160))
    image.paste((40, 40, 60), (96, 64, 160, 128))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def handovers(orchestration: Any, url: str) -> list[tuple[int, float]]:
    """(phase handed over from, seconds from its gate passing to the next prompt running)."""
    from quality.models import PhaseRun

    runs = {r.phase: r for r in PhaseRun.objects.filter(orchestration=orchestration)}
    out = []
    for phase in (1, 2):
        passed, nxt = runs[phase], runs[phase + 1]
        first = nxt.jobs.order_by("pk").first()
        assert passed.finished_at is not None and first is not None and first.prompt_id, (phase, first)
        start = asyncio.run(execution_starts(url, [first.prompt_id]))[first.prompt_id]
        out.append((phase, start - passed.finished_at.timestamp()))
    return out


async def execution_starts(url: str, prompt_ids: list[str]) -> dict[str, float]:
    """When each prompt started running in ComfyUI (``execution_start`` in its history), in seconds;
    also for a prompt that then failed."""
    from generation.comfyui import ComfyClient

    out = {}
    async with ComfyClient(url, timeout=30) as comfy:
        for pid in prompt_ids:
            data = await comfy._http.get_json(f"/history/{pid}")
            stamps = {name: body.get("timestamp") for name, body in data[pid]["status"]["messages"]}
            out[pid] = stamps["execution_start"] / 1000
    return out


def plain_submits(owner: Any, project: Any, character: Any, url: str, n: int) -> list[float]:
    """Seconds from ``jobs_create`` to the prompt running, for n plain jobs one after another."""
    from characters.models import ReferenceImage
    from generation.models import Job, JobStatus
    from generation.services.inputs import image_source_from
    from generation.services.submit import jobs_create

    template = shipped("weightless-loop")
    source = image_source_from(ReferenceImage.objects.filter(character=character).first())
    out = []
    for i in range(n):
        request = time.time()
        [job] = jobs_create(
            user=owner, project=project, template=template, seeds=[900 + i], images={"init_image": source}
        )
        ended = Job.objects.filter(pk=job.pk, status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED])
        wait_until(
            ended.exists,
            timeout=60,
            what=f"plain job {job.pk}",
        )
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise RuntimeError(f"plain job {job.pk} ended {job.status}: {job.error}")
        out.append(asyncio.run(execution_starts(url, [job.prompt_id]))[job.prompt_id] - request)
    return out


def run(env: TowerEnvironment, fake: FakeProcess, args: argparse.Namespace) -> list[Row]:
    from django.contrib.auth import get_user_model

    from characters.services import character_add_reference, character_create
    from generation.models import Backend
    from generation.services.reconcile import backend_refresh
    from projects.services import project_create
    from quality.models import Orchestration, PhaseRun
    from quality.services.orchestration import orchestration_start

    owner = get_user_model().objects.create_user("bench", password=None)
    project = project_create(owner=owner, name="Bench orchestration")
    project.advance_unevaluated = True
    project.max_regenerations = 0  # one attempt a phase: each gate passes (not evaluated) at once
    project.save(update_fields=["advance_unevaluated", "max_regenerations"])
    backend = Backend.objects.create(name="fake", url=fake.url)
    backend_refresh(backend=backend, force_object_info=True)
    shipped("weightless-sheet")
    character = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    character_add_reference(character=character, upload=io.BytesIO(reference_png()), original_name="kai.png")

    gaps: list[tuple[int, float]] = []
    endings: list[str] = []
    for i in range(args.orchestrations):
        started = time.time()
        orchestration = orchestration_start(
            user=owner, project=project, character=character, prompt=f"on a rooftop {i}", templates=WEIGHTLESS
        )
        done = Orchestration.objects.filter(pk=orchestration.pk, status__in=ENDED)
        wait_until(
            done.exists,
            timeout=args.timeout,
            what=f"orchestration {orchestration.pk} to end (log: {env.log_path})",
            interval=0.1,
        )
        orchestration.refresh_from_db()
        endings.append(orchestration.status)
        video = PhaseRun.objects.get(orchestration=orchestration, phase=3)
        if orchestration.status != "complete" and not video.jobs.exclude(prompt_id="").exists():
            raise RuntimeError(
                f"orchestration {orchestration.pk} ended {orchestration.status}: {orchestration.reasons}"
            )
        mine = handovers(orchestration, fake.url)
        gaps += mine
        print(
            f"orchestration {i + 1}: {time.time() - started:.1f} s; handovers "
            + ", ".join(f"{p}→{p + 1} {1000 * s:.0f} ms" for p, s in mine),
            file=sys.stderr,
        )
    print("orchestrations ended: " + ", ".join(f"{endings.count(e)} {e}" for e in sorted(set(endings))))
    plain = plain_submits(owner, project, character, fake.url, args.orchestrations)

    tower = median([s for _, s in gaps]) * 1000
    base = median(plain) * 1000
    return [
        Row(
            f"gate passed → next phase's prompt running (median of {len(gaps)} handovers, "
            f"{args.orchestrations} orchestrations)",
            tower,
            base,
            "ms",
            f"≤ {TARGET_MS:.0f} ms",
            tower <= TARGET_MS,
        ),
        *(
            Row(f"  phase {p} → {p + 1} (median)", median([s for q, s in gaps if q == p]) * 1000, None, "ms")
            for p in (1, 2)
        ),
        Row("  slowest handover", max(s for _, s in gaps) * 1000, max(plain) * 1000, "ms"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orchestrations", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=180, help="seconds an orchestration may take")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = parser.parse_args()
    exit_on_sigterm()

    env = TowerEnvironment()
    fake = FakeProcess(env.tmp / "comfy", checkpoints=[])
    rows: list[Row] = []
    try:
        env.setup()
        fake.wait_ready()
        env.start_cluster()
        rows = run(env, fake, args)
    finally:
        env.stop_cluster()
        fake.stop()
        if args.keep:
            print(f"kept {env.tmp}")
        else:
            env.teardown()
    print("baseline column: a plain job on weightless-loop with the same image, jobs_create → prompt running")
    print_table(rows)
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
