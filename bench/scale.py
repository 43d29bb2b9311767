"""Studio scale: the pages and API lists a producer opens, on 100,000 assets, 20,000 jobs,
50,000 dataset images and 200 characters in 20 projects.

    .venv/bin/python bench/scale.py                       # embedded SQLite (a temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/tower_scale .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --api-load            # also bench/_api_load.py's row

The same run first builds a hundredth of the studio and measures every page on it (the baseline
column), then grows it to full size and measures again. Requests go through Django's test client
as a signed-in member of every project. Per page: p95 of ``--requests`` requests ≤ 150 ms, and
the number of queries equal at both sizes (and on page 1 and page 3 of a paginated list). On
PostgreSQL the tables of the database named by ``DATABASE_URL`` are emptied first. Exit 1 when a
target is missed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import Row, TowerEnvironment, exit_on_sigterm, print_table

P95_MS = 150.0


@dataclass
class Page:
    name: str
    url: str
    paged: bool = False  # also compare the queries of page 3 with page 1


@dataclass
class Measure:
    p95_ms: float
    queries: int
    queries_later: int | None
    status: int


def pages(studio: Any) -> list[Page]:
    """What a producer opens, the gallery once per filter; ids from the small data set, so the same
    row is asked for at both sizes."""
    project = studio.projects[0].pk
    character = studio.characters[0].pk
    return [
        Page("dashboard", "/"),
        Page("job list", "/jobs/", paged=True),
        Page("job list ?status=failed", "/jobs/?status=failed"),
        Page("job list ?project", f"/jobs/?project={project}"),
        Page("gallery", "/gallery/", paged=True),
        Page("gallery ?project", f"/gallery/?project={project}"),
        Page("gallery ?character", f"/gallery/?character={character}"),
        Page("gallery ?kind=video", "/gallery/?kind=video"),
        Page("gallery ?status=passed", "/gallery/?status=passed"),
        Page("gallery ?status=failed", "/gallery/?status=failed"),
        Page("gallery ?status=unscored", "/gallery/?status=unscored"),
        Page("gallery ?min_aesthetic=8", "/gallery/?min_aesthetic=8"),
        Page("gallery ?min_similarity=0.8", "/gallery/?min_similarity=0.8"),
        Page("review queue", "/review/"),
        Page("review queue ?character", f"/review/?character={character}"),
        Page("character page", f"/characters/{character}/"),
        Page("character list", "/characters/"),
        Page("API jobs", "/api/v1/jobs", paged=True),
        Page("API jobs ?page_size=50", "/api/v1/jobs?page_size=50"),
        Page("API assets", "/api/v1/assets", paged=True),
        Page("API characters", "/api/v1/characters"),
        Page("API projects", "/api/v1/projects"),
        Page("API assets ?project", f"/api/v1/assets?project={project}"),
    ]


def _get(client: Any, url: str) -> Any:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    if response.streaming:  # read the whole answer, as a browser would
        b"".join(response.streaming_content)
    return response


def measure(client: Any, page: Page, requests: int) -> Measure:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _get(client, page.url)  # warm: templates compiled, caches filled
    with CaptureQueriesContext(connection) as captured:
        response = _get(client, page.url)
    queries = len(captured)  # read now: the log is emptied at the next request
    later = None
    if page.paged:
        joiner = "&" if "?" in page.url else "?"
        with CaptureQueriesContext(connection) as captured_later:
            _get(client, f"{page.url}{joiner}page=3")
        later = len(captured_later)
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        _get(client, page.url)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return Measure(p95_ms=p95, queries=queries, queries_later=later, status=response.status_code)


def measure_all(client: Any, studio: Any, requests: int, only: list[str] | None = None) -> dict[str, Measure]:
    results = {}
    for page in pages(studio):
        if only and not any(part in page.name for part in only):
            continue
        results[page.name] = result = measure(client, page, requests)
        print(f"  {page.name}: p95 {result.p95_ms:.1f} ms, {result.queries} queries", flush=True)
    return results


def _empty_database() -> None:
    """A PostgreSQL database given by DATABASE_URL may hold an earlier run: start from empty."""
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0)


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def run(args: argparse.Namespace) -> int:
    env = TowerEnvironment()
    env.setup()
    try:
        from django.conf import settings
        from django.db import connection
        from django.test import Client
        from django.utils import timezone

        from bench import _scale_data as data

        if connection.vendor != "sqlite":
            _empty_database()
        database = f"{connection.vendor} ({settings.DATABASES['default']['NAME']})"
        print(f"database: {database}; {_load()}", flush=True)
        base = timezone.now() - timedelta(days=60)
        studio = data.start()
        client = Client(HTTP_HOST="localhost")
        client.force_login(studio.member)

        small = data.counts_at(args.fraction)
        started = time.perf_counter()
        data.grow(studio, small, base=base)
        print(f"small data set {small} built in {time.perf_counter() - started:.1f} s", flush=True)
        baseline = measure_all(client, studio, args.requests, args.only)

        full = data.counts_at(args.scale)
        started = time.perf_counter()
        written = data.grow(studio, full, base=base)
        built = time.perf_counter() - started
        print(f"full data set {full} (+{written['scores']} scores) built in {built:.1f} s", flush=True)
        at_scale = measure_all(client, studio, args.requests, args.only)
        print(f"measured; {_load()}", flush=True)
        rows = report(baseline, at_scale)
        if args.api_load:
            rows += api_load_rows()
        print_table(rows)
        missed = [r.metric for r in rows if r.passed is False]
        if missed:
            print(f"missed: {', '.join(missed)}")
        return 1 if missed else 0
    finally:
        env.teardown()


def report(baseline: dict[str, Measure], at_scale: dict[str, Measure]) -> list[Row]:
    rows = []
    for name, full in at_scale.items():
        small = baseline[name]
        rows.append(Row(f"{name}: p95", full.p95_ms, small.p95_ms, "ms", f"≤ {P95_MS:.0f} ms", full.p95_ms <= P95_MS))
        same = full.queries == small.queries
        target = "= small set"
        if full.queries_later is not None:
            same = same and full.queries_later == full.queries
            target = "= small set, = page 3"
        rows.append(Row(f"{name}: queries", full.queries, small.queries, "", target, same))
        if full.queries_later is not None:
            rows.append(Row(f"{name}: queries page 3", full.queries_later, small.queries_later, "", "(report)"))
    return rows


def api_load_rows() -> list[Row]:
    """bench/_api_load.py's open loop on ``GET /api/v1/jobs?page_size=50``, against this studio's
    database (its own project of jobs added), with its single-process baseline."""
    from bench import _api_load

    return _api_load.rows()


def main() -> int:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full studio (default 1)")
    parser.add_argument("--fraction", type=float, default=0.01, help="the baseline's fraction (default 1/100)")
    parser.add_argument(
        "--only", action="append", metavar="TEXT", help="measure only the pages whose name contains TEXT (repeatable)"
    )
    parser.add_argument("--api-load", action="store_true", help="also run bench/_api_load.py's row")
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
