from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.files.storage import Storage, default_storage
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat, truncatechars
from django.utils import timezone

from generation.models import (
    LIVE_STATUSES,
    Asset,
    AssetKind,
    Backend,
    BackendObjectInfo,
    BackendUpload,
    InputImage,
    Job,
    JobLogLine,
    JobStatus,
    WorkflowTemplate,
)
from generation.services.backends import backend_check_after_commit, backends_set_enabled
from generation.services.jobs import JobError, job_transition
from generation.services.submit import job_retry
from generation.services.thumbnails import asset_thumbnail_ensure
from projects.admin_scope import ProjectScopedAdmin
from tower.core.admin import (
    PREVIEW_PX,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    admin_link,
    pretty_json,
    thumbnail,
    thumbnail_url,
)
from tower.core.thumbnails import AdminThumbnailMixin, admin_thumb_url
from tower.core.users import signed_in


def asset_thumb(asset: Asset, *, size: int | None = None) -> str:
    """The asset's stored thumbnail; while it is missing, the admin's thumb view, which makes it.

    Never the full-size file in a list (a page of PNGs weighs hundreds of megabytes); a change
    page's large preview may show the image itself.
    """
    alt = f"asset {asset.pk}"
    if size and asset.kind != AssetKind.VIDEO and asset.mime.startswith("image/"):
        return thumbnail(asset.file, alt=alt, size=size)
    kwargs = {"size": size} if size else {}
    if asset.thumbnail:
        return thumbnail(asset.thumbnail, alt=alt, **kwargs)
    return thumbnail_url(admin_thumb_url(Asset, asset.pk), alt=alt, **kwargs)


# --- Backends ------------------------------------------------------------------------------------


BACKEND_HEALTH_FIELDS = (
    "healthy",
    "last_seen_at",
    "last_error",
    "comfyui_version",
    "supports_prompt_id",
    "last_checkpoint",
    "last_assigned_at",
    "object_info_link",
    "node_count",
    "stats_json",
    "created_at",
)


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}  # ComfyUI speaks plain HTTP
    list_display = ["name", "url", "enabled", "healthy", "last_seen_at", "comfyui_version", "max_in_flight"]
    list_filter = ["enabled", "healthy"]
    search_fields = ["name", "url"]
    actions = ["enable", "disable"]
    # Refreshed by the health poller, never typed in.
    readonly_fields = BACKEND_HEALTH_FIELDS
    fieldsets = [
        (None, {"fields": ["name", "url", "enabled", "max_in_flight", "vram_hold_threshold"]}),
        ("Health (maintained by Tower)", {"fields": list(BACKEND_HEALTH_FIELDS)}),
    ]

    @admin.display(description="/object_info fetched")
    def object_info_link(self, obj: Backend) -> str:
        info = BackendObjectInfo.objects.filter(backend=obj).values_list("pk", "fetched_at").first()
        if info is None:
            return "—"
        return admin_link(BackendObjectInfo, info[0], timezone.localtime(info[1]).strftime("%Y-%m-%d %H:%M"))

    @admin.display(description="last /system_stats")
    def stats_json(self, obj: Backend) -> str:
        return pretty_json(obj.stats)

    @admin.display(description="node classes")
    def node_count(self, obj: Backend) -> int:
        return len(obj.node_classes or [])

    def save_model(self, request: HttpRequest, obj: Backend, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or {"url", "enabled"} & set(form.changed_data):
            backend_check_after_commit(obj.pk)  # not "down" until the next minute's poll

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Backend], enabled: bool) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        changed = backends_set_enabled(backend_ids=ids, enabled=enabled)
        verb = "enabled" if enabled else "disabled"
        self.message_user(request, f"{changed} backend(s) {verb}; {len(ids) - changed} already were.", messages.SUCCESS)

    @admin.action(description="Enable the selected backends", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Backend]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected backends (no new work is sent)", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Backend]) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(BackendObjectInfo)
class BackendObjectInfoAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The cached ``/object_info`` of each backend (pre-flight reads it); refreshed by Tower."""

    list_display = ["backend", "fetched_at", "digest"]
    list_select_related = ["backend"]
    search_fields = ["backend__name", "=digest"]
    readonly_fields = fields = ("backend", "fetched_at", "digest", "node_count", "node_names")

    def get_queryset(self, request: HttpRequest) -> QuerySet[BackendObjectInfo]:
        # ``data`` is hundreds of kilobytes per row: the list does not need it.
        return super().get_queryset(request).defer("data")

    @admin.display(description="node classes")
    def node_count(self, obj: BackendObjectInfo) -> int:
        return len(obj.data or {})

    @admin.display(description="names")
    def node_names(self, obj: BackendObjectInfo) -> str:
        return ", ".join(sorted(obj.data or {})) or "—"


@admin.register(BackendUpload)
class BackendUploadAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Files Tower has put in each backend's input folder. Deleting a row makes the next job that
    needs the file upload it again (the engine also does so when the backend has lost it)."""

    list_display = ["name", "backend", "uploaded_at"]
    list_select_related = ["backend"]
    list_filter = [("backend", RelatedOnlyFieldListFilter)]
    search_fields = ["name", "=sha256"]
    date_hierarchy = "uploaded_at"
    show_full_result_count = False
    readonly_fields = fields = ("backend", "name", "sha256", "uploaded_at")


# --- Workflow templates --------------------------------------------------------------------------


@admin.register(WorkflowTemplate)
class WorkflowTemplateAdmin(ProjectScopedAdmin):
    """Templates with no project are shared by every project; only superusers change those."""

    project_lookup = "project"
    list_display = ["name", "slug", "kind", "project", "source", "weightless", "updated_at"]
    list_select_related = ["project"]
    list_filter = ["kind", "source", "weightless", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["name", "slug", "description"]
    autocomplete_fields = ["project"]
    readonly_fields = ["required_nodes", "created_by", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "kind", "project", "source", "weightless", "description"]}),
        ("Graph", {"fields": ["graph", "bindings", "required_nodes"]}),
        ("Provenance", {"fields": ["created_by", "created_at", "updated_at"]}),
    ]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowTemplate]:
        queryset = admin.ModelAdmin.get_queryset(self, request)
        if request.user.is_superuser:
            return queryset
        visible = ProjectScopedAdmin.get_queryset(self, request).values("pk")
        return queryset.filter(Q(project__isnull=True) | Q(pk__in=visible))

    def save_model(self, request: HttpRequest, obj: WorkflowTemplate, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = signed_in(request.user)
        super().save_model(request, obj, form, change)


# --- Jobs ----------------------------------------------------------------------------------------


class JobRecencyFilter(admin.SimpleListFilter):
    title = "recently"
    parameter_name = "recently"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("finished_24h", "Finished in the last 24 h"),
            ("failed_today", "Failed today"),
            ("in_flight", "On a backend now"),
            ("stuck", "Queued for over an hour"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        now = timezone.now()
        if self.value() == "finished_24h":
            return queryset.filter(finished_at__gte=now - timedelta(hours=24))
        if self.value() == "failed_today":
            midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
            return queryset.filter(status=JobStatus.FAILED, finished_at__gte=midnight)
        if self.value() == "in_flight":
            return queryset.filter(status__in=LIVE_STATUSES)
        if self.value() == "stuck":
            return queryset.filter(status=JobStatus.QUEUED, created_at__lt=now - timedelta(hours=1))
        return queryset


class JobLogLineInline(ReadOnlyInline):
    model = JobLogLine
    readonly_fields = fields = ("created_at", "level", "message")
    show_change_link = False
    classes = ["collapse"]


class AssetInline(ReadOnlyInline):
    model = Asset
    fk_name = "job"
    readonly_fields = fields = ("thumb", "kind", "mime", "size", "dimensions", "created_at")

    @admin.display(description="preview")
    def thumb(self, obj: Asset) -> str:
        return asset_thumb(obj)

    @admin.display(description="size")
    def size(self, obj: Asset) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="pixels")
    def dimensions(self, obj: Asset) -> str:
        return f"{obj.width}×{obj.height}" if obj.width and obj.height else "—"


JOB_FIELDSETS: list[tuple[str | None, dict[str, list[str]]]] = [
    (None, {"fields": ["project", "kind", "phase", "mode", "status", "created_by", "created_at"]}),
    (
        "What",
        {"fields": ["character", "version", "variation", "scene", "template", "prompt", "negative_prompt", "seed"]},
    ),
    ("Progress", {"fields": ["progress_percent", "current_node", "eta_seconds", "queue_position"]}),
    ("Where", {"fields": ["backend", "prompt_id", "client_id", "worker", "heartbeat_at", "submission_attempts"]}),
    ("Error", {"fields": ["error_node", "error_type", "error_message", "error_details_json"]}),
    ("Timings", {"fields": ["submitted_at", "started_at", "finished_at", "duration", "timings_json"]}),
    ("Lineage", {"fields": ["parent", "reproduce_of", "batch", "label"]}),
    ("Parameters", {"classes": ["collapse"], "fields": ["params_json", "overrides_json", "graph_json"]}),
]


@admin.register(Job)
class JobAdmin(ProjectScopedAdmin):
    """Jobs are records of what ran: every field is read-only, the status moves only through
    ``job_transition`` (here: the cancel action)."""

    project_lookup = "project"
    inlines = [AssetInline, JobLogLineInline]
    list_display = [
        "id",
        "kind",
        "status",
        "label",
        "project",
        "character",
        "backend",
        "progress_percent",
        "created_at",
        "duration",
    ]
    list_select_related = ["project", "character", "backend"]
    list_filter = [
        JobRecencyFilter,
        "status",
        "kind",
        "mode",
        "phase",
        "backend",
        ("project", RelatedOnlyFieldListFilter),
    ]
    search_fields = ["=id", "prompt", "label", "=prompt_id", "=batch", "error_message"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["cancel_queued", "retry"]
    fieldsets = JOB_FIELDSETS  # type: ignore[assignment]  # plain dicts; the stubs type the options as a TypedDict
    readonly_fields = [f for _, opts in JOB_FIELDSETS for f in opts["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the generation services

    @admin.display(description="submission attempts", ordering="attempts")
    def submission_attempts(self, obj: Job) -> str:
        """The same words and number as the job page: times sent to ComfyUI, of the most allowed."""
        return f"{obj.attempts} of {obj.max_attempts}"

    @admin.display(description="progress", ordering="progress")
    def progress_percent(self, obj: Job) -> str:
        return f"{obj.progress:.0%}"

    @admin.display(description="took")
    def duration(self, obj: Job) -> str:
        start = obj.started_at or obj.submitted_at
        if not (start and obj.finished_at):
            return "—"
        return f"{(obj.finished_at - start).total_seconds():.1f} s"

    @admin.display(description="error details")
    def error_details_json(self, obj: Job) -> str:
        return pretty_json(obj.error_details)

    @admin.display(description="timings")
    def timings_json(self, obj: Job) -> str:
        return pretty_json(obj.timings)

    @admin.display(description="resolved parameters")
    def params_json(self, obj: Job) -> str:
        return pretty_json(obj.params)

    @admin.display(description="overrides of the style")
    def overrides_json(self, obj: Job) -> str:
        return pretty_json(obj.overrides)

    @admin.display(description="graph submitted")
    def graph_json(self, obj: Job) -> str:
        return pretty_json(obj.graph)

    @admin.action(description="Cancel the selected queued jobs", permissions=["change"])
    def cancel_queued(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        ids, skipped = self.writable_ids(request, queryset)
        cancelled = 0
        for job_id in ids:
            if job_transition(job_id=job_id, to=JobStatus.CANCELLED, expect=JobStatus.QUEUED):
                cancelled += 1
        not_queued = len(ids) - cancelled
        self.message_user(
            request,
            f"{cancelled} job(s) cancelled; {not_queued} were not queued and were left alone.",
            messages.SUCCESS if cancelled else messages.WARNING,
        )
        self.report_skipped(request, skipped)

    @admin.action(description="Retry the selected failed or cancelled jobs", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        """A new job with the same graph and seed for each, through the Retry service the job page uses."""
        ids, skipped = self.writable_ids(request, queryset)
        created, refused = [], []
        for job in Job.objects.filter(pk__in=ids).order_by("pk"):
            try:
                clone = job_retry(job=job, user=signed_in(request.user))
            except JobError as exc:
                refused.append(f"#{job.pk}: {exc}")
            else:
                created.append(f"#{job.pk} → #{clone.pk}")
        if created:
            self.message_user(request, f"{len(created)} job(s) retried: {', '.join(created)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not retried: {'; '.join(refused)}.", messages.WARNING)
        self.report_skipped(request, skipped)


# --- Assets and logs -----------------------------------------------------------------------------


@admin.register(Asset)
class AssetAdmin(AdminThumbnailMixin, ReadOnlyAdminMixin, ProjectScopedAdmin):
    """Outputs fetched from ComfyUI: read-only, deletable."""

    def thumbnail_storage_name(self, obj: Asset) -> tuple[Storage, str | None]:
        # Videos and animations get their first frame, as on the pages.
        return default_storage, asset_thumbnail_ensure(asset_id=obj.pk)

    project_lookup = "project"
    list_display = ["thumb", "id", "kind", "mime", "size", "dimensions", "project", "job_link", "created_at"]
    list_display_links = ["thumb", "id"]
    list_select_related = ["project"]
    list_filter = ["kind", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "=sha256", "comfy_filename", "=job__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    raw_id_fields = ["job"]
    fields = [
        "preview",
        "project",
        "job",
        "file",
        "kind",
        "mime",
        "size",
        ("width", "height"),
        "frames",
        "fps",
        "duration_seconds",
        "sha256",
        "node_id",
        "comfy_filename",
        "metadata_json",
        "created_at",
    ]
    readonly_fields = [f for f in fields if isinstance(f, str)] + ["width", "height"]

    @admin.display(description="preview")
    def thumb(self, obj: Asset) -> str:
        return asset_thumb(obj)

    @admin.display(description="preview")
    def preview(self, obj: Asset) -> str:
        return asset_thumb(obj, size=PREVIEW_PX)

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: Asset) -> str:
        return admin_link(Job, obj.job_id)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: Asset) -> str:
        return filesizeformat(obj.size_bytes)

    @admin.display(description="pixels")
    def dimensions(self, obj: Asset) -> str:
        return f"{obj.width}×{obj.height}" if obj.width and obj.height else "—"

    @admin.display(description="metadata")
    def metadata_json(self, obj: Asset) -> str:
        return pretty_json(obj.metadata)


@admin.register(InputImage)
class InputImageAdmin(AdminThumbnailMixin, ReadOnlyAdminMixin, ProjectScopedAdmin):
    """Images people uploaded to feed templates' image inputs: read-only, deletable."""

    thumbnail_field = "file"
    project_lookup = "project"
    list_display = ["thumb", "id", "original_name", "dimensions", "project", "created_by", "created_at"]
    list_display_links = ["thumb", "id"]
    list_select_related = ["project", "created_by"]
    list_filter = [("project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "=sha256", "original_name"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["preview", "project", "file", "original_name", ("width", "height"), "sha256", "created_by", "created_at"]
    readonly_fields = [f for f in fields if isinstance(f, str)] + ["width", "height"]

    @admin.display(description="preview")
    def thumb(self, obj: InputImage) -> str:
        return self.thumbnail_cell(obj, alt=f"input image {obj.pk}")

    @admin.display(description="preview")
    def preview(self, obj: InputImage) -> str:
        return thumbnail(obj.file, alt=f"input image {obj.pk}", size=PREVIEW_PX)

    @admin.display(description="pixels")
    def dimensions(self, obj: InputImage) -> str:
        return f"{obj.width}×{obj.height}"


@admin.register(JobLogLine)
class JobLogLineAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_lookup = "job__project"
    list_display = ["created_at", "job_link", "level", "short_message"]
    list_filter = ["level"]
    search_fields = ["message", "=job__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ["-id"]
    raw_id_fields = ["job"]
    readonly_fields = fields = ("job", "created_at", "level", "message", "data_json")

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: JobLogLine) -> str:
        return admin_link(Job, obj.job_id)

    @admin.display(description="message")
    def short_message(self, obj: JobLogLine) -> str:
        return truncatechars(obj.message, 120)

    @admin.display(description="data")
    def data_json(self, obj: JobLogLine) -> str:
        return pretty_json(obj.data)


from generation import assembly_admin  # noqa: E402, F401  (registers the assemblies' admin; admin.py is autodiscovered)
