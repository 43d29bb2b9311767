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

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db.models import Q, QuerySet
from django.http import Http404

from characters.selectors import (
    characters_visible_to,
    primary_reference,
    references_visible_to,
    variations_visible_to,
    versions_visible_to,
)
from generation.models import TERMINAL_STATUSES, Asset, Job, JobStatus, WorkflowTemplate
from generation.selectors import assets_visible_to, templates_visible_to
from generation.services.inputs import IMAGE_PARAMETERS, input_image_create, template_image_inputs
from generation.services.jobs import JobError
from generation.services.requests import submit_request
from generation.services.submit import job_cancel
from projects.models import Project
from projects.selectors import project_get_for_user

DEFAULT_TEMPLATE = "txt2img-sd15"
POLL_INTERVAL = 0.2  # seconds between database reads while waiting
PLAIN_EVERY = 2.0  # without a terminal, an unchanged job is re-printed at most this often
BAR_WIDTH = 24
PRIMARY = "primary"  # --reference without an id


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
        project = _project(options["project"])
        user = _user(options["user"], project)
        _check_access(user, project)
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
        data.update(_character_parts(user, project, options))
        images = _image_parts(user, project, options, data)
        if images:
            data["images"] = images
        if options["force"].strip():
            data["force_reason"] = options["force"].strip()
        try:
            jobs = submit_request(user=user, data=data)
        except Http404 as exc:
            if "template" in str(exc):
                raise CommandError(_no_template(user, project, str(options["template"]))) from None
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

    def _interrupted(self, ids: list[int], user: AbstractBaseUser, *, ask: bool) -> None:
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
        assets: dict[int, list[Asset]] = {}
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


# --- resolving the command line ------------------------------------------------------------------


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as such (``steps=30`` is a number)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def _by_id_or_slug(queryset: QuerySet, ref: str) -> list[Any]:
    ref = str(ref).strip()
    return list(queryset.filter(pk=int(ref)) if ref.isdigit() else queryset.filter(slug=ref))[:2]


def _project(ref: str) -> Project:
    found = _by_id_or_slug(Project.objects.select_related("owner"), ref)
    if not found:
        raise CommandError(f"no project {ref!r} (give its id or slug)")
    return found[0]


def _user(username: str | None, project: Project) -> AbstractBaseUser:
    if username is None:
        return project.owner
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user


def _check_access(user: AbstractBaseUser, project: Project) -> None:
    try:
        project_get_for_user(user=user, pk=project.pk, write=True)
    except Http404:
        raise CommandError(f"user {user.get_username()!r} has no access to project {project.slug!r}") from None
    except PermissionDenied:
        raise CommandError(
            f"user {user.get_username()!r} has read-only access to project {project.slug!r}; "
            "generating needs its owner or an editor"
        ) from None


def _character_parts(user: AbstractBaseUser, project: Project, options: dict[str, Any]) -> dict[str, int]:
    parts: dict[str, int] = {}
    character = None
    if options["character"]:
        found = _by_id_or_slug(characters_visible_to(user).filter(project=project), options["character"])
        if not found:
            raise CommandError(f"no character {options['character']!r} in project {project.slug!r}")
        character = found[0]
        parts["character"] = character.pk
    for option, key, queryset in (
        ("character_version", "version", versions_visible_to(user)),
        ("variation", "variation", variations_visible_to(user)),
    ):
        ref = options[option]
        if not ref:
            continue
        if character is None and not str(ref).isdigit():
            raise CommandError(f"--{key} by slug needs --character")
        scope = queryset.filter(character=character) if character else queryset.filter(character__project=project)
        found = _by_id_or_slug(scope, ref)
        where = f"character {character.slug!r}" if character else f"project {project.slug!r}"
        if not found:
            raise CommandError(f"no {key} {ref!r} for {where}")
        if len(found) > 1:
            raise CommandError(f"{key} {ref!r} is ambiguous for {where}; give its id")
        parts[key] = found[0].pk
    return parts


def _template(user: AbstractBaseUser, project: Project, ref: str) -> WorkflowTemplate:
    templates = templates_visible_to(user).filter(Q(project__isnull=True) | Q(project=project)).order_by("project")
    found = _by_id_or_slug(templates, ref)
    if not found:
        raise CommandError(_no_template(user, project, ref))
    return found[0]


def _image_parts(
    user: AbstractBaseUser, project: Project, options: dict[str, Any], data: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """``images`` of the request from --reference, --init-asset and --image (files stored first)."""
    if not (options["reference"] or options["init_asset"] is not None or options["images"]):
        return {}
    template = _template(user, project, str(options["template"]))
    inputs = template_image_inputs(template)
    if not inputs:
        raise CommandError(f"template {template.slug!r} takes no image input; choose one that does")
    images: dict[str, dict[str, int]] = {}

    def put(param: str, spec: dict[str, int], flag: str) -> None:
        if param not in inputs:
            raise CommandError(
                f"{flag}: template {template.slug!r} has no {param!r} input (it takes: {', '.join(inputs)})"
            )
        if param in images:
            raise CommandError(f"{flag}: {param!r} is given twice")
        images[param] = spec

    def first_free(flag: str) -> str:
        free = [p for p in inputs if p not in images]
        if not free:
            raise CommandError(f"{flag}: every image input of {template.slug!r} is already given")
        return free[0]

    if options["init_asset"] is not None:
        pk = options["init_asset"]
        if not assets_visible_to(user).filter(project=project, pk=pk).exists():
            raise CommandError(f"--init-asset {pk}: no output #{pk} in project {project.slug!r}")
        put("init_image", {"asset": pk}, "--init-asset")
    if options["reference"]:
        reference = _reference(user, project, options["reference"], data)
        param = "reference_image" if "reference_image" in inputs else first_free("--reference")
        put(param, {"reference": reference}, "--reference")
    for value in options["images"]:
        name, sep, rest = value.partition("=")
        param, path = (name, rest) if sep and name in IMAGE_PARAMETERS else (None, value)
        if param is None and sep and name.isidentifier() and not Path(value).exists():
            raise CommandError(f"--image {value}: no image input {name!r}; the image inputs are {', '.join(inputs)}")
        upload = _store_image(user, project, Path(path), flag=f"--image {value}")
        put(param or first_free(f"--image {value}"), {"upload": upload}, f"--image {value}")
    return images


def _reference(user: AbstractBaseUser, project: Project, ref: str, data: dict[str, Any]) -> int:
    if ref != PRIMARY:
        if not ref.isdigit():
            raise CommandError(f"--reference {ref}: give a reference image's id, or no value for the primary one")
        if not references_visible_to(user).filter(character__project=project, pk=int(ref)).exists():
            raise CommandError(f"--reference {ref}: no reference image #{ref} in project {project.slug!r}")
        return int(ref)
    if "character" not in data:
        raise CommandError("--reference without an id takes the character's primary reference: give --character")
    character = characters_visible_to(user).get(pk=data["character"])
    version = versions_visible_to(user).filter(pk=data.get("version")).first() if data.get("version") else None
    reference = primary_reference(character, version)
    if reference is None:
        raise CommandError(f"--reference: character {character.slug!r} has no reference images yet; upload one first")
    return reference.pk


def _store_image(user: AbstractBaseUser, project: Project, path: Path, *, flag: str) -> int:
    if not path.is_file():
        raise CommandError(f"{flag}: no such file")
    try:
        with path.open("rb") as handle:
            image, _ = input_image_create(project=project, user=user, upload=handle, original_name=path.name)
    except OSError as exc:
        raise CommandError(f"{flag}: cannot read it ({exc.strerror or exc})") from None
    except ValidationError as exc:
        raise CommandError(f"{flag}: {'; '.join(exc.messages)}") from None
    return image.pk


def _no_template(user: AbstractBaseUser, project: Project, ref: str) -> str:
    slugs = list(
        templates_visible_to(user)
        .filter(Q(project__isnull=True) | Q(project=project))
        .order_by("slug")
        .values_list("slug", flat=True)
    )
    if not slugs:
        return (
            f"no workflow template {ref!r}: none are loaded. Run `manage.py sync_workflows` "
            "(serve does it at start) or import one."
        )
    return f"no workflow template {ref!r} for project {project.slug!r}; available: {', '.join(slugs)}"


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
            changed = last is None or last[:2] != key
            if changed or (not view.terminal and now - last[2] >= PLAIN_EVERY):
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
        return asset.file.name
