"""Image inputs of a job: where a template's image parameter gets its file, and the name it has on a backend.

A source is a file in Tower's storage (a character's reference, an earlier output, an upload).
The engine uploads it to the backend that runs the job under a content-addressed name, so the
same bytes are uploaded once per backend (``BackendUpload``) and a graph naming the file is
reproducible: the name says which bytes it held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from generation.models import Asset, InputImage, JobKind, WorkflowTemplate

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
        path, label = obj.file.name, f"output #{obj.pk}"
    elif isinstance(obj, InputImage):
        path, label = obj.file.name, f"upload #{obj.pk}"
    else:
        path, label = obj.image.name, f"reference #{obj.pk}"
    return ImageSource(path=path, sha256=obj.sha256, extension=path.rsplit(".", 1)[-1].lower(), label=label)


def template_image_inputs(template: WorkflowTemplate) -> list[str]:
    """The image parameters ``template`` binds, in :data:`IMAGE_PARAMETERS` order."""
    bound = template.bindings or {}
    return [name for name in IMAGE_PARAMETERS if bound.get(name)]


def upload_name(source: ImageSource) -> str:
    """The file name the source has in a backend's input folder (what LoadImage is given)."""
    return f"tower-{source.sha256[:24]}.{source.extension}"
