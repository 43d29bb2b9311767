"""The studio a scale run measures: projects, characters, jobs, assets with scores, dataset images.

Rows are written with ``bulk_create`` in batches and no files: list pages read no file, and the
run checks exactly that (a page that opened a missing file would fail or slow down). ``grow``
adds rows up to the counts asked for, so the small data set is the first hundredth of the full
one and both are measured in the same database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from unittest import mock

FULL = {"projects": 20, "characters": 200, "jobs": 20_000, "assets": 100_000, "dataset_images": 50_000}
BATCH = 2000
BACKENDS = 2


@dataclass
class Studio:
    owner: Any
    member: Any
    projects: list[Any]
    characters: list[Any]


def counts_at(fraction: float) -> dict[str, int]:
    return {name: max(1, round(n * fraction)) for name, n in FULL.items()}


def _sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _without_auto_now(model: Any) -> Any:
    """Let a bulk insert set ``created_at`` itself: a studio's rows span weeks, not one instant,
    and the pages' order and indexes only mean something then."""
    return mock.patch.object(model._meta.get_field("created_at"), "auto_now_add", False)


def _insert(model: Any, rows: Any, *, dated: bool = True) -> int:
    batch: list[Any] = []
    written = 0
    with _without_auto_now(model) if dated else contextlib.nullcontext():
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                model.objects.bulk_create(batch)
                written += len(batch)
                batch = []
        if batch:
            model.objects.bulk_create(batch)
            written += len(batch)
    return written


def _scores_of(n: int) -> list[tuple[str, float, float]]:
    """The n-th output's scores as (metric, value, threshold): none on one output in twenty,
    aesthetic on nine of ten, character similarity on seven."""
    if n % 20 == 0:
        return []  # one output in twenty is not scored yet
    rows = []
    if n % 10:
        rows.append(("aesthetic", 4.0 + (n % 60) / 10, 5.0))
    if n % 10 < 7:
        rows.append(("character_similarity", 0.4 + (n % 50) / 100, 0.5))
    return rows


def _copies(n: int) -> dict[str, Any]:
    """The asset's copies of its scores' verdict and values, as quality's scoring writes them."""
    rows = {metric: (value, value >= threshold) for metric, value, threshold in _scores_of(n)}
    passed = {ok for _, ok in rows.values()}
    verdict = "failed" if False in passed else "passed" if passed else "unscored"
    aesthetic, similarity = rows.get("aesthetic"), rows.get("character_similarity")
    return {
        "verdict": verdict,
        "aesthetic": aesthetic[0] if aesthetic else None,
        "similarity": similarity[0] if similarity else None,
    }


def _graph() -> dict[str, Any]:
    from bench._common import ROOT

    return json.loads((ROOT / "workflows" / "txt2img-sd15.json").read_text())


def start() -> Studio:
    """The people and the fixed rows (backends, one template); no projects yet."""
    from django.contrib.auth import get_user_model

    from generation.models import Backend

    users = get_user_model().objects
    owner = users.create_user("scale-owner", password="x" * 12)
    member = users.create_user("scale-member", password="x" * 12)
    Backend.objects.bulk_create(
        Backend(name=f"gpu-{n}", url=f"http://127.0.0.1:{9000 + n}", healthy=True) for n in range(BACKENDS)
    )
    return Studio(owner=owner, member=member, projects=[], characters=[])


def grow(studio: Studio, counts: dict[str, int], *, base: Any) -> dict[str, int]:
    """Add rows until the studio has ``counts``; returns how many rows of each kind were written."""
    from characters.models import Character
    from generation.models import Asset, AssetKind, Backend, Job, JobKind, JobStatus
    from projects.models import MemberRole, Membership
    from projects.services import project_create
    from quality.models import QualityScore, ScoreStatus
    from training.models import DatasetImage, DatasetSource, ReviewStatus

    written: dict[str, int] = {}
    for n in range(len(studio.projects), counts["projects"]):
        project = project_create(owner=studio.owner, name=f"Scale project {n:02d}")
        Membership.objects.create(project=project, user=studio.member, role=MemberRole.EDITOR)
        studio.projects.append(project)
    written["projects"] = counts["projects"]

    first = len(studio.characters)
    new = [
        Character(
            project=studio.projects[n % len(studio.projects)],
            name=f"Character {n:03d}",
            slug=f"character-{n:03d}",
            design_prompt=f"1girl, character {n}, silver hair, red eyes, school uniform",
            trigger_word=f"chr{n:03d}",
        )
        for n in range(first, counts["characters"])
    ]
    Character.objects.bulk_create(new)
    studio.characters = list(Character.objects.order_by("pk"))
    written["characters"] = len(new)
    by_project: dict[int, list[Any]] = {}
    for character in studio.characters:
        by_project.setdefault(character.project_id, []).append(character)

    backends = list(Backend.objects.order_by("pk"))
    graph = _graph()
    params = {"steps": 20, "cfg": 7.0, "sampler": "euler_ancestral", "scheduler": "normal", "width": 512}
    statuses = [JobStatus.SUCCEEDED] * 17 + [JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED]
    kinds = [JobKind.IMAGE] * 7 + [JobKind.CHARACTER_SHEET, JobKind.LOOP, JobKind.VIDEO]
    minute = timedelta(minutes=1)
    jobs_before = Job.objects.count()

    def jobs() -> Any:
        for n in range(jobs_before, counts["jobs"]):
            project = studio.projects[n % len(studio.projects)]
            cast = by_project.get(project.pk) or [None]
            status = statuses[n % len(statuses)]
            done = status != JobStatus.QUEUED
            yield Job(
                project=project,
                character=cast[(n // len(studio.projects)) % len(cast)],
                created_by=studio.member,
                kind=kinds[n % len(kinds)],
                status=status,
                progress=1.0 if done else 0.0,
                prompt=f"1girl, scene {n}, masterpiece",
                negative_prompt="lowres, bad anatomy",
                params={**params, "seed": n},
                graph=graph if done else None,
                seed=n,
                backend=backends[n % len(backends)] if done else None,
                prompt_id=_sha("prompt", n)[:32] if done else "",
                created_at=base + n * minute,
                finished_at=base + n * minute + timedelta(seconds=30) if done else None,
            )

    written["jobs"] = _insert(Job, jobs())

    # Assets belong to finished jobs, five a job on average, in the jobs' order.
    assets_before = Asset.objects.count()
    job_rows = list(
        Job.objects.exclude(status=JobStatus.QUEUED).order_by("pk").values_list("pk", "project_id", "created_at")
    )
    asset_kinds = [AssetKind.IMAGE] * 8 + [AssetKind.ANIMATION, AssetKind.VIDEO]

    def assets() -> Any:
        for n in range(assets_before, counts["assets"]):
            job_id, project_id, created = job_rows[min(n * len(job_rows) // counts["assets"], len(job_rows) - 1)]
            kind = asset_kinds[n % len(asset_kinds)]
            yield Asset(
                project_id=project_id,
                job_id=job_id,
                file=f"assets/{project_id}/scale-{n}.png",
                kind=kind,
                mime="image/png" if kind == AssetKind.IMAGE else "video/mp4",
                size_bytes=400_000,
                width=512,
                height=768,
                sha256=_sha("asset", n),
                metadata={"seed": n},
                created_at=created + timedelta(seconds=40 + n % 5),
                **_copies(n),
            )

    written["assets"] = _insert(Asset, assets())

    def scores() -> Any:
        new_assets = Asset.objects.filter(pk__gt=0).order_by("pk")[assets_before:]
        for n, asset_id in enumerate(new_assets.values_list("pk", flat=True).iterator(), start=assets_before):
            for metric, value, threshold in _scores_of(n):
                yield QualityScore(
                    asset_id=asset_id,
                    metric=metric,
                    value=value,
                    threshold=threshold,
                    passed=value >= threshold,
                    status=ScoreStatus.OK,
                    model_id="scale",
                )

    written["scores"] = _insert(QualityScore, scores(), dated=False)

    images_before = DatasetImage.objects.count()
    review = [ReviewStatus.PENDING, ReviewStatus.PENDING, ReviewStatus.APPROVED, ReviewStatus.REJECTED]
    sources = [DatasetSource.UPLOAD, DatasetSource.GENERATED, DatasetSource.VIDEO_FRAME]

    def images() -> Any:
        for n in range(images_before, counts["dataset_images"]):
            character = studio.characters[n % len(studio.characters)]
            yield DatasetImage(
                character=character,
                image=f"datasets/{character.pk}/scale-{n}.png",
                width=768,
                height=768,
                sha256=_sha("dataset", n),
                source=sources[n % len(sources)],
                status=review[n % len(review)],
                caption=f"chr{character.pk:03d}, 1girl, frame {n}",
                created_at=base + n * timedelta(seconds=30),
            )

    written["dataset_images"] = _insert(DatasetImage, images())
    _analyze()
    return written


def _analyze() -> None:
    """PostgreSQL plans from table statistics, which a bulk load leaves stale until autovacuum
    (off on some servers) comes by; a studio's database has them, so the run gathers them."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
