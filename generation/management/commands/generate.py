"""``manage.py generate``: submit jobs from the command line and watch them until they are done.

The jobs go through the same service as the API (``submit_request``), so access rules, overrides
and pre-flight behave exactly alike; the engine's workers pick them up. While waiting, the command
polls the database (no WebSocket needed) and draws one progress line per job on a terminal, or
prints plain lines when its output is a file or a pipe. Ctrl-C offers to cancel the jobs.

Image inputs: ``--reference`` (without an id: the character's primary reference), ``--init-asset ID``
(an earlier output) and ``--image [NAME=]PATH`` (a local file, stored as an input image of the project).

Exit status: 0 when every job succeeded, 1 otherwise (failed, cancelled, or left running).
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.http import Http404

from generation.management.commands._generate_request import (
    PRIMARY,
    character_parts,
    check_access,
    image_parts,
    no_template_message,
    parse_overrides,
    project_by_ref,
    user_named,
)
from generation.models import TERMINAL_STATUSES, Asset, Job, JobStatus
from generation.services.inputs import IMAGE_PARAMETERS
from generation.services.jobs import JobError
from generation.services.requests import submit_request
from generation.services.submit import job_cancel
from tower.core.files import stored_name

DEFAULT_TEMPLATE = "txt2img-sd15"
POLL_INTERVAL = 0.2  # seconds between database reads while waiting
PLAIN_EVERY = 2.0  # without a terminal, an unchanged job is re-printed at most this often
BAR_WIDTH = 24


def _pause(seconds: float) -> None:
    """Sleep between polls (a seam for tests, which replace it to simulate Ctrl-C)."""
    time.sleep(seconds)


class Command(BaseCommand):
    help = "Submit generation jobs and show their progress until they are done."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # --version names a character version here, not Django's version.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="project id or slug")
        parser.add_argument("--template", default=DEFAULT_TEMPLATE, help=f"id or slug (default {DEFAULT_TEMPLATE})")
        parser.add_argument("--character", help="character id or slug, within the project")
        parser.add_argument("--version", dest="character_version", help="character version id or slug")
        parser.add_argument("--variation", help="variation (outfit, expression…) id or slug")
        parser.add_argument("--mode", choices=["draft", "production"], default="draft")
        parser.add_argument("--prompt", default="")
        parser.add_argument("--negative", default="")
        parser.add_argument("--seed", type=int, action="append", dest="seeds", help="repeat for several jobs")
        parser.add_argument("--count", type=int, help="jobs with drawn seeds (default 1; not with --seed)")
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            dest="overrides",
            metavar="KEY=VALUE",
            help="override a parameter over the project's style; VALUE is read as JSON when it parses "
            '(--set steps=30 --set loras=\'[{"name": "x.safetensors", "strength": 0.7}]\')',
        )
        parser.add_argument(
            "--reference",
            nargs="?",
            const=PRIMARY,
            metavar="ID",
            help="a reference image as the template's reference_image (else its first image input); "
            "without an id, the character's primary reference",
        )
        parser.add_argument("--init-asset", type=int, metavar="ID", help="an earlier output as the init image")
        parser.add_argument(
            "--image",
            action="append",
            default=[],
            dest="images",
            metavar="[NAME=]PATH",
            help="a local image file, stored as an input image of the project, for the image input NAME "
            f"({', '.join(IMAGE_PARAMETERS)}; default: the template's first one left empty)",
        )
        parser.add_argument(
            "--force",
            metavar="REASON",
            default="",
            help="run phase-2/3 work for a character whose earlier phase gate is closed; the reason is recorded",
        )
        parser.add_argument("--user", help="username to act as (default: the project's owner)")
        parser.add_argument("--no-wait", action="store_true", help="submit and exit without waiting")
        parser.add_argument(
            "--cancel-on-interrupt", action="store_true", help="on Ctrl-C, cancel the jobs without asking"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_by_ref(options["project"])
        user = user_named(options["user"], project)
        check_access(user, project)
        data: dict[str, Any] = {
            "project": project.pk,
            "template": options["template"],
            "mode": options["mode"],
            "prompt": options["prompt"],
            "negative": options["negative"],
            "overrides": parse_overrides(options["overrides"]),
            "count": options["count"],
            "seeds": options["seeds"],
        }
        data.update(character_parts(user, project, options))
        images = image_parts(user, project, options, data)
        if images:
            data["images"] = images
        if options["force"].strip():
            data["force_reason"] = options["force"].strip()
        try:
            jobs = submit_request(user=user, data=data)
        except Http404 as exc:
            if "template" in str(exc):
                raise CommandError(no_template_message(user, project, str(options["template"]))) from None
            raise CommandError(f"the jobs cannot be created: {str(exc).lower()} in project {project.slug!r}") from None
        except (JobError, ValidationError) as exc:
            message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            if "needs an image" in message:
                message += "; on the command line: --reference [ID], --init-asset ID or --image [NAME=]PATH"
            raise CommandError(f"the jobs cannot be created: {message}") from None
        ids = [job.pk for job in jobs]
        template = jobs[0].template
        self.stdout.write(
            f"Submitted {len(ids)} job{'s' if len(ids) != 1 else ''} to {project.slug} "
            f"({template.slug if template else '?'}, {options['mode']}) as {user.get_username()}: "
            + ", ".join(f"#{pk}" for pk in ids)
        )
        if options["no_wait"]:
            return
        display = Display(self.stdout)
        try:
            watch(ids, display)
        except KeyboardInterrupt:
            display.close()
            self._interrupted(ids, user, ask=not options["cancel_on_interrupt"])
        succeeded = self._report(ids)
        if not succeeded:
            sys.exit(1)

    def _interrupted(self, ids: list[int], user: User, *, ask: bool) -> None:
        unfinished = list(Job.objects.filter(pk__in=ids).exclude(status__in=TERMINAL_STATUSES).order_by("pk"))
        if not unfinished:
            return
        if ask and not self._confirm(f"Cancel the {len(unfinished)} unfinished job(s)? [y/N] "):
            self.stdout.write("Left running; follow them in Tower or with --cancel-on-interrupt cancel next time.")
            return
        for job in unfinished:
            try:
                job_cancel(job=job, user=user)
            except JobError as exc:  # it finished meanwhile
                self.stdout.write(f"#{job.pk}: {exc}")
        self.stdout.write(f"Cancelled {len(unfinished)} job(s).")

    def _confirm(self, question: str) -> bool:
        if not sys.stdin.isatty():
            return False
        try:
            return input(question).strip().lower() in {"y", "yes"}
        except (EOFError, KeyboardInterrupt):
            self.stdout.write("")
            return False

    def _report(self, ids: list[int]) -> bool:
        jobs = {job.pk: job for job in Job.objects.filter(pk__in=ids).select_related("backend")}
        assets: dict[int | None, list[Asset]] = {}  # job_id is nullable
        for asset in Asset.objects.filter(job_id__in=ids).order_by("pk"):
            assets.setdefault(asset.job_id, []).append(asset)
        self.stdout.write("Results:")
        for pk in ids:
            job = jobs[pk]
            self.stdout.write(f"  {result_line(job)}")
            for asset in assets.get(pk, []):
                self.stdout.write(f"      {_asset_path(asset)}")
        done = sum(1 for job in jobs.values() if job.status == JobStatus.SUCCEEDED)
        summary = f"{done} of {len(ids)} job{'s' if len(ids) != 1 else ''} succeeded."
        self.stdout.write(self.style.SUCCESS(summary) if done == len(ids) else self.style.ERROR(summary))
        return done == len(ids)


# --- watching ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobView:
    pk: int
    status: str
    progress: float
    node: str
    eta: float | None
    queue_position: int | None
    backend: str | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


def snapshot(ids: list[int]) -> list[JobView]:
    rows = Job.objects.filter(pk__in=ids).values_list(
        "pk", "status", "progress", "current_node", "eta_seconds", "queue_position", "backend__name"
    )
    by_pk = {row[0]: JobView(*row) for row in rows}
    return [by_pk[pk] for pk in ids if pk in by_pk]


def watch(ids: list[int], display: Display) -> list[JobView]:
    """Poll until every job has ended (a deleted job counts as ended)."""
    while True:
        views = snapshot(ids)
        display.update(views)
        if all(view.terminal for view in views):
            display.close()
            return views
        _pause(POLL_INTERVAL)


def bar(fraction: float, width: int = BAR_WIDTH, *, fancy: bool = True) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    full, empty = ("█", "░") if fancy else ("#", ".")
    return f"[{full * filled}{empty * (width - filled)}] {fraction * 100:3.0f}%"


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def progress_line(view: JobView, *, fancy: bool = True) -> str:
    fraction = 1.0 if view.status == JobStatus.SUCCEEDED else view.progress
    detail: list[str] = [view.status]
    if view.status == JobStatus.QUEUED and view.queue_position:
        detail.append(f"position {view.queue_position}")
    if view.status in (JobStatus.SUBMITTED, JobStatus.RUNNING) and view.backend:
        detail.append(f"on {view.backend}")
    if view.status == JobStatus.RUNNING and view.node:
        detail.append(view.node)
    if view.status == JobStatus.RUNNING and view.eta is not None:
        detail.append(f"ETA {_clock(view.eta)}")
    return f"#{view.pk:<5} {bar(fraction, fancy=fancy)}  " + "  ".join(detail)


class Display:
    """One line per job redrawn in place on a terminal; plain lines on change otherwise."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last_frame = ""
        self.printed: dict[int, tuple[str, str, float]] = {}

    def update(self, views: list[JobView]) -> None:
        if self.tty:
            self._redraw(views)
        else:
            self._plain(views)

    def _redraw(self, views: list[JobView]) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        text = "".join(f"\x1b[2K{progress_line(view)[:width]}\n" for view in views)
        if self.drawn and text == self.last_frame:
            return
        self.last_frame = text
        up = f"\x1b[{self.drawn}F" if self.drawn else ""
        self.out.write(up + text, ending="")
        self.out.flush()
        self.drawn = len(views)

    def _plain(self, views: list[JobView]) -> None:
        now = time.monotonic()
        for view in views:
            key = (view.status, view.node)
            last = self.printed.get(view.pk)
            if last is None or last[:2] != key or (not view.terminal and now - last[2] >= PLAIN_EVERY):
                self.printed[view.pk] = (*key, now)
                self.out.write(progress_line(view, fancy=False))

    def close(self) -> None:
        self.drawn, self.last_frame = 0, ""  # later output starts below the bars
        self.out.flush()


def result_line(job: Job) -> str:
    if job.status == JobStatus.SUCCEEDED:
        took = ""
        if job.started_at and job.finished_at:
            took = f" in {(job.finished_at - job.started_at).total_seconds():.1f} s"
        where = f" on {job.backend.name}" if job.backend else ""
        return f"#{job.pk} succeeded{took}{where} (seed {job.seed})"
    if job.status == JobStatus.FAILED:
        node = f" at {job.error_node}" if job.error_node else ""
        kind = job.error_type or "error"
        return f"#{job.pk} failed: {kind}{node}: {job.error_message}"
    return f"#{job.pk} {job.status}"


def _asset_path(asset: Asset) -> str:
    try:
        return asset.file.path
    except NotImplementedError:  # remote storage: the name within it
        return stored_name(asset.file)
