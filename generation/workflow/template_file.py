"""Template files: a graph, its bindings and what Tower needs to list it.

A shipped template is one JSON file in ``workflows/``::

    {"name": "...", "slug": "...", "kind": "image", "description": "...", "weightless": false,
     "graph": {...API format...}, "bindings": {...}}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.workflow.bindings import BindingError, normalize_bindings, resolve_bindings
from generation.workflow.graph import Graph, GraphFormatError, WorkflowError, validate_graph

KINDS = ("image", "img2img", "character_sheet", "loop", "video", "segment")

# Node classes that run on a stock ComfyUI with no model files: the 50 recorded as executing
# successfully on a server with no models (shared/comfyui/weightless_nodes.json) plus the
# sources it lists (LoadImage reads an uploaded file; EmptyLatentImage is left out because
# nothing weightless can decode a latent).
WEIGHTLESS_NODES = frozenset(
    {
        "Canny",
        "CreateVideo",
        "CropMask",
        "EmptyImage",
        "FeatherMask",
        "FluxKontextImageScale",
        "GetVideoComponents",
        "GrowMask",
        "ImageAddNoise",
        "ImageBatch",
        "ImageBlend",
        "ImageBlur",
        "ImageColorToMask",
        "ImageCompositeMasked",
        "ImageCrop",
        "ImageFlip",
        "ImageFromBatch",
        "ImageInvert",
        "ImagePadForOutpaint",
        "ImageQuantize",
        "ImageRGBToYUV",
        "ImageRotate",
        "ImageScale",
        "ImageScaleBy",
        "ImageScaleToMaxDimension",
        "ImageScaleToTotalPixels",
        "ImageSharpen",
        "ImageStitch",
        "ImageToMask",
        "ImageYUVToRGB",
        "InvertMask",
        "JoinImageWithAlpha",
        "LTXVPreprocess",
        "MaskComposite",
        "MaskPreview",
        "MaskToImage",
        "Morphology",
        "PorterDuffImageComposite",
        "PreviewImage",
        "RebatchImages",
        "RepeatImageBatch",
        "ResizeAndPadImage",
        "SaveAnimatedPNG",
        "SaveAnimatedWEBP",
        "SaveImage",
        "SaveVideo",
        "SaveWEBM",
        "SolidMask",
        "SplitImageWithAlpha",
        "ThresholdMask",
        "LoadImage",
        "LoadImageOutput",
        "LoadVideo",
    }
)

_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")


class TemplateFormatError(WorkflowError):
    """A template file (or import) that Tower cannot use; ``problems`` lists each reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    slug: str
    kind: str
    description: str
    weightless: bool
    graph: Graph
    bindings: dict[str, Any]


def parse_template(data: Any) -> TemplateSpec:
    """Validate a template document; raise :class:`TemplateFormatError` with every problem."""
    if not isinstance(data, dict):
        raise TemplateFormatError(["a template file must be a JSON object"])
    problems: list[str] = []
    known = {"name", "slug", "kind", "description", "weightless", "graph", "bindings"}
    unknown = set(data) - known
    if unknown:
        problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
    name, slug, kind = data.get("name"), data.get("slug"), data.get("kind")
    description, weightless = data.get("description", ""), data.get("weightless", False)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        problems.append("'name' must be non-empty text of at most 200 characters")
    if not isinstance(slug, str) or not _SLUG.match(slug) or len(slug) > 80:
        problems.append("'slug' must be lowercase letters, digits and dashes (at most 80)")
    if kind not in KINDS:
        problems.append(f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    if not isinstance(description, str):
        problems.append("'description' must be text")
    if not isinstance(weightless, bool):
        problems.append("'weightless' must be true or false")
    graph = data.get("graph")
    try:
        validate_graph(graph)
    except GraphFormatError as exc:
        problems.extend(f"graph: {p}" for p in exc.problems)
        graph = None
    bindings = data.get("bindings", {})
    if graph is not None:
        try:
            resolve_bindings(graph, normalize_bindings(bindings))
        except BindingError as exc:
            problems.extend(f"bindings: {p}" for p in exc.problems)
        if weightless is True:
            heavy = sorted({n["class_type"] for n in graph.values()} - WEIGHTLESS_NODES)
            if heavy:
                problems.append(f"a weightless template may not use {', '.join(heavy)}")
    if problems:
        raise TemplateFormatError(problems)
    assert isinstance(graph, dict)
    return TemplateSpec(
        name=name.strip(),
        slug=slug,
        kind=kind,
        description=description,
        weightless=weightless,
        graph=graph,
        bindings=bindings,
    )


def load_template_file(path: Path) -> TemplateSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TemplateFormatError([f"cannot read {path.name}: {exc}"]) from exc
    return parse_template(data)
