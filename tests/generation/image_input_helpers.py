"""What the image-input tests share: a ComfyUI with IPAdapter Plus, and running or inspecting a job."""

from __future__ import annotations

from characters.models import ReferenceImage
from generation import tasks
from generation.models import Job
from generation.services.submit import jobs_create
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import job, shipped

CHECKPOINT = "anime_v1.safetensors"
SMALL = {"width": 64, "height": 64}
UPLOADS = "POST /upload/image"

# IPAdapter Plus's two nodes as its /object_info describes them (the fake runs them as generic nodes).
IPADAPTER_NODES = {
    "IPAdapterUnifiedLoader": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "preset": [["LIGHT - SD1.5 only (low strength)", "STANDARD (medium strength)", "PLUS (high strength)"]],
            },
            "optional": {"ipadapter": ["IPADAPTER"]},
        },
        "input_order": {"required": ["model", "preset"], "optional": ["ipadapter"]},
        "output": ["MODEL", "IPADAPTER"],
        "output_is_list": [False, False],
        "output_name": ["model", "ipadapter"],
        "name": "IPAdapterUnifiedLoader",
        "display_name": "IPAdapter Unified Loader",
        "description": "",
        "python_module": "custom_nodes.ComfyUI_IPAdapter_plus",
        "category": "ipadapter",
        "output_node": False,
    },
    "IPAdapterAdvanced": {
        "input": {
            "required": {
                "model": ["MODEL"],
                "ipadapter": ["IPADAPTER"],
                "image": ["IMAGE"],
                "weight": ["FLOAT", {"default": 1.0, "min": -1, "max": 5, "step": 0.05}],
                "weight_type": [["linear", "ease in", "ease out", "style transfer"]],
                "combine_embeds": [["concat", "add", "subtract", "average", "norm average"]],
                "start_at": ["FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001}],
                "end_at": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.001}],
                "embeds_scaling": [["V only", "K+V", "K+V w/ C penalty", "K+mean(V) w/ C penalty"]],
            },
        },
        "input_order": {
            "required": [
                "model",
                "ipadapter",
                "image",
                "weight",
                "weight_type",
                "combine_embeds",
                "start_at",
                "end_at",
                "embeds_scaling",
            ]
        },
        "output": ["MODEL"],
        "output_is_list": [False],
        "output_name": ["MODEL"],
        "name": "IPAdapterAdvanced",
        "display_name": "IPAdapter Advanced",
        "description": "",
        "python_module": "custom_nodes.ComfyUI_IPAdapter_plus",
        "category": "ipadapter",
        "output_node": False,
    },
}


def primary_of(character) -> ReferenceImage:
    return ReferenceImage.objects.get(character=character, is_primary=True, version__isnull=True)


def ipadapter_job(project, owner, **kw) -> Job:
    [created] = jobs_create(
        user=owner,
        project=project,
        template=shipped("ipadapter-character"),
        overrides={**SMALL, "checkpoint": CHECKPOINT, "steps": 2},
        **kw,
    )
    return created


def received_prompt(fake: FakeComfy, done: Job) -> dict:
    """The graph the fake ComfyUI received for the job (its history keeps the queue item)."""
    return fake.history[done.prompt_id]["prompt"][2]


def run(created: Job) -> Job:
    outcome = tasks.job_run(created.pk)
    done = job(created.pk)
    assert outcome == "succeeded", (outcome, done.error_type, done.error_message)
    return done
