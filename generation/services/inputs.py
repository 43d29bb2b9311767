"""Image inputs of a job: where a template's image parameter gets its file, and the name it has on a backend.

A source is a file in Tower's storage (a character's reference, an earlier output, an upload).
The engine uploads it to the backend that runs the job under a content-addressed name, so the
same bytes are uploaded once per backend (``BackendUpload``) and a graph naming the file is
reproducible: the name says which bytes it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import Storage
from django.db import IntegrityError, transaction

from generation.models import Asset, BackendUpload, InputImage, JobKind, WorkflowTemplate
from projects.models import Project
from tower.core.files import stored_name
from tower.core.thumbnails import make_jpeg_thumbnail, thumb_name
from tower.core.uploads import UploadError, check_image

if TYPE_CHECKING:
    from characters.models import ReferenceImage

# Parameters that take a file name for a LoadImage-like node, in the order a template's inputs
# are listed (and the first is the one a phase hands its best output to).
IMAGE_PARAMETERS = ("init_image", "reference_image")

# The production phase a job of each kind belongs to: stills and sheets, loops, video.
PHASE_OF_KIND: dict[str, int] = {
    JobKind.IMAGE: 1,
    JobKind.IMG2IMG: 1,
    JobKind.CHARACTER_SHEET: 1,
    JobKind.LOOP: 2,
    JobKind.VIDEO: 3,
    JobKind.SEGMENT: 3,
}


@dataclass(frozen=True)
class ImageSource:
    path: str  # storage path under MEDIA_ROOT
    sha256: str
    extension: str
    label: str = ""  # for people: "reference #3", "output #12", "upload #4"


def image_source_from(obj: Asset | ReferenceImage | InputImage) -> ImageSource:
    """The stored file of a reference, an output or an upload, as a job's image input."""
    if isinstance(obj, Asset):
        path, label = stored_name(obj.file), f"output #{obj.pk}"
    elif isinstance(obj, InputImage):
        path, label = stored_name(obj.file), f"upload #{obj.pk}"
    else:
        path, label = stored_name(obj.image), f"reference #{obj.pk}"
    return ImageSource(path=path, sha256=obj.sha256, extension=path.rsplit(".", 1)[-1].lower(), label=label)


def template_image_inputs(template: WorkflowTemplate) -> list[str]:
    """The image parameters ``template`` binds, in :data:`IMAGE_PARAMETERS` order."""
    bound = template.bindings or {}
    return [name for name in IMAGE_PARAMETERS if bound.get(name)]


def upload_name(source: ImageSource) -> str:
    """The file name the source has in a backend's input folder (what LoadImage is given)."""
    return f"tower-{source.sha256[:24]}.{source.extension}"


def input_image_create(
    *, project: Project, user: User | None, upload: IO[bytes], original_name: str = ""
) -> tuple[InputImage, bool]:
    """Store an uploaded image as an input of ``project``; (the row, whether it is new).

    Validated by content and bounded (``tower.core.uploads``), stored under its content's name
    (``inputs/<project>/<sha256>.<ext>``): the same bytes uploaded again give the existing row.
    If anything fails after the file is written, the file is removed again.
    """
    try:
        checked = check_image(upload, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except UploadError as exc:
        raise ValidationError({"file": str(exc)}) from None
    existing = InputImage.objects.filter(project=project, sha256=checked.sha256).first()
    if existing is not None:
        return existing, False
    image = InputImage(
        project=project,
        created_by=user,
        sha256=checked.sha256,
        width=checked.width,
        height=checked.height,
        original_name=(original_name or "")[:255],
    )
    stored: list[str] = []
    try:
        with transaction.atomic():
            image.file.save(f"{checked.sha256}.{checked.extension}", ContentFile(checked.data), save=False)
            stored.append(stored_name(image.file))
            image.full_clean(exclude=["file"])
            image.save()
            stored.append(_store_thumbnail(image.file.storage, stored_name(image.file), checked.data))
    except IntegrityError:
        # The same bytes came in twice at once: the other request's row stands.
        _delete(image.file.storage, stored)
        return InputImage.objects.get(project=project, sha256=checked.sha256), False
    except BaseException:
        _delete(image.file.storage, stored)
        raise
    return image, True


def _store_thumbnail(storage: Storage, name: str, data: bytes) -> str:
    """The picker's thumbnail, made while the validated bytes are in hand (pages never make one)."""
    thumb = thumb_name(name)
    if storage.exists(thumb):
        return ""  # the file was stored once before (its row since deleted): it is the same image
    return storage.save(thumb, ContentFile(make_jpeg_thumbnail(data)))


def _delete(storage: Storage, names: list[str]) -> None:
    for name in names:
        if name:
            storage.delete(name)


# --- What each backend holds (the engine's bookkeeping) ------------------------------------------


def backend_uploads_present(*, backend_id: int, names: list[str]) -> set[str]:
    """Which of ``names`` Tower has uploaded to the backend before."""
    return set(BackendUpload.objects.filter(backend_id=backend_id, name__in=names).values_list("name", flat=True))


def backend_uploads_record(*, backend_id: int, uploads: list[tuple[str, str]]) -> None:
    """Remember files (name, sha256) now in the backend's input folder; a name already known stays."""
    BackendUpload.objects.bulk_create(
        [BackendUpload(backend_id=backend_id, name=name, sha256=sha256) for name, sha256 in uploads],
        ignore_conflicts=True,
    )


def backend_uploads_forget(*, backend_id: int, names: list[str]) -> None:
    """The backend no longer has these files (its input folder was cleared): upload them next time."""
    BackendUpload.objects.filter(backend_id=backend_id, name__in=names).delete()


def missing_uploads(inputs: list[dict[str, str]], node_errors: dict[str, Any]) -> list[str]:
    """The job's uploaded files a refused prompt's ``node_errors`` say the server does not have.

    ComfyUI names the file in LoadImage's "Invalid image file: NAME" (custom validation) or in
    "image: 'NAME' not in [...]" (value not in list); only the part before the list is read, which
    may name other files.
    """
    names = {str(item.get("name", "")) for item in inputs} - {""}
    gone: list[str] = []
    for node in (node_errors or {}).values():
        for error in (node or {}).get("errors", []) if isinstance(node, dict) else []:
            if not isinstance(error, dict):
                continue
            received = (error.get("extra_info") or {}).get("received_value")
            text = " ".join([str(error.get("details", "")).split(" not in ", 1)[0], str(received or "")])
            gone.extend(name for name in names if name in text and name not in gone)
    return gone
