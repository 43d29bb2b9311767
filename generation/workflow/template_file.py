"""Template files: a graph, its bindings and what Tower needs to list it.

A shipped template is one JSON file in ``workflows/``::

    {"name": "...", "slug": "...", "kind": "image", "description": "...", "weightless": false,
     "graph": {...API format...}, "bindings": {...}}

A character sheet that draws poses also says how its panels are laid out,
``"layout": {"columns": 4, "rows": 2}``: :data:`SHEET_COLUMNS` columns and as many rows as the
poses need (:func:`sheet_layout`), which the file must match.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.workflow.bindings import BindingError, normalize_bindings, pose_count, resolve_bindings
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

SHEET_COLUMNS = 4


def sheet_layout(panels: int) -> dict[str, int]:
    """A sheet of ``panels`` equal panels: 4 columns, as many rows as needed, no spacing."""
    return {"columns": SHEET_COLUMNS, "rows": max(1, math.ceil(panels / SHEET_COLUMNS))}


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
    layout: dict[str, int] | None = None  # a character sheet's panels (see the module docstring)


def parse_template(data: Any) -> TemplateSpec:
    """Validate a template document; raise :class:`TemplateFormatError` with every problem."""
    if not isinstance(data, dict):
        raise TemplateFormatError(["a template file must be a JSON object"])
    problems: list[str] = []
    known = {"name", "slug", "kind", "description", "weightless", "graph", "bindings", "layout"}
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
    layout = data.get("layout")
    if graph is not None:
        try:
            normalized = normalize_bindings(bindings)
            resolve_bindings(graph, normalized)
        except BindingError as exc:
            problems.extend(f"bindings: {p}" for p in exc.problems)
        else:
            problems.extend(_layout_problems(kind, layout, pose_count(normalized)))
        if weightless is True:
            heavy = sorted({n["class_type"] for n in graph.values()} - WEIGHTLESS_NODES)
            if heavy:
                problems.append(f"a weightless template may not use {', '.join(heavy)}")
    if problems:
        raise TemplateFormatError(problems)
    assert isinstance(graph, dict) and isinstance(name, str) and isinstance(slug, str) and isinstance(kind, str)
    return TemplateSpec(
        name=name.strip(),
        slug=slug,
        kind=kind,
        description=description,
        weightless=weightless,
        graph=graph,
        bindings=bindings,
        layout=layout,
    )


def _layout_problems(kind: Any, layout: Any, poses: int) -> list[str]:
    if layout is None:
        if kind == "character_sheet" and poses:
            return [f'a sheet of {poses} poses needs "layout": {json.dumps(sheet_layout(poses))}']
        return []
    if kind != "character_sheet" or not poses:
        return ["'layout' is for character sheets that bind 'poses'"]
    if layout != sheet_layout(poses):
        return [f"'layout' must be {json.dumps(sheet_layout(poses))} for {poses} poses, not {json.dumps(layout)}"]
    return []


def load_template_file(path: Path) -> TemplateSpec:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TemplateFormatError([f"cannot read {path.name}: {exc}"]) from exc
    return parse_template(data)
