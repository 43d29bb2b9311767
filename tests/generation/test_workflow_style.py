"""Imported graphs run as written: the project style reaches only the inputs a template says follow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.services.inputs import ImageSource
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from generation.services.templates import template_import
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

# A user's export: a 512×512 canvas with seeded grain, saved as an animated WebP at 10 fps.
ANIMATION = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 4, "color": 0}},
    "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 0, "strength": 0.2}},
    "3": {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["2", 0],
            "filename_prefix": "mine",
            "fps": 10.0,
            "lossless": False,
            "quality": 80,
            "method": "default",
        },
    },
}


@pytest.fixture
def styled(project):
    style = project.style
    style.width, style.height, style.fps = 768, 1024, 12
    style.checkpoint, style.sampler, style.steps = "counterfeit_v3.safetensors", "dpmpp_2m", 28
    style.style_prompt, style.negative_prompt = "neon lighting", "worst quality"
    style.save()
    return project


def _import(project, owner, graph, **kwargs):
    return template_import(project=project, name="Mine", graph_json=graph, kind="loop", user=owner, **kwargs)


def test_an_imported_graph_keeps_its_own_size_and_fps(styled, owner, enqueued):
    template = _import(styled, owner, ANIMATION)
    [job] = jobs_create(user=owner, project=styled, template=template)
    assert (job.graph["1"]["inputs"]["width"], job.graph["1"]["inputs"]["height"]) == (512, 512)
    assert job.graph["3"]["inputs"]["fps"] == 10.0
    # The job records what it ran with, not the style's values.
    assert (job.params["width"], job.params["height"], job.params["fps"]) == (512, 512, 10.0)


def test_the_request_still_overrides_an_imported_graph(styled, owner, enqueued):
    template = _import(styled, owner, ANIMATION)
    [job] = jobs_create(user=owner, project=styled, template=template, overrides={"width": 640, "fps": 8})
    assert (job.graph["1"]["inputs"]["width"], job.graph["1"]["inputs"]["height"]) == (640, 512)
    assert job.graph["3"]["inputs"]["fps"] == 8
    assert job.overrides == {"width": 640, "fps": 8}


def test_a_binding_marked_style_follows_the_project_style(styled, owner, enqueued):
    bindings = {
        "width": {"node": "1", "input": "width", "style": True},
        "height": {"node": "1", "input": "height"},
        "seed": {"node": "2", "input": "seed"},
        "fps": {"node": "3", "input": "fps", "style": True},
    }
    template = _import(styled, owner, ANIMATION, bindings=bindings)
    [job] = jobs_create(user=owner, project=styled, template=template)
    assert (job.graph["1"]["inputs"]["width"], job.graph["1"]["inputs"]["height"]) == (768, 512)
    assert job.graph["3"]["inputs"]["fps"] == 12


def test_an_imported_model_graph_keeps_its_checkpoint_sampler_and_steps(styled, owner, enqueued):
    graph = json.loads((WORKFLOWS / "txt2img-sd15.json").read_text())["graph"]
    template = _import(styled, owner, graph)
    [job] = jobs_create(user=owner, project=styled, template=template, prompt="rooftop at night")
    sampler = job.graph["3"]["inputs"]
    assert job.graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert (sampler["sampler_name"], sampler["steps"]) == ("euler_ancestral", 25)
    assert (job.graph["5"]["inputs"]["width"], job.graph["5"]["inputs"]["height"]) == (512, 768)
    # The request's prompt reaches the graph; the style's texts do not (the template does not ask for them).
    assert job.graph["6"]["inputs"]["text"] == "rooftop at night"
    assert job.graph["7"]["inputs"]["text"] == ""
    assert job.params["checkpoint"] == "v1-5-pruned-emaonly.safetensors"
    assert not [n for n in job.graph.values() if n["class_type"] == "LoraLoader"]


def test_shipped_templates_still_follow_the_style(styled, owner, enqueued):
    [job] = jobs_create(user=owner, project=styled, template=shipped("txt2img-sd15"), prompt="rooftop")
    sampler = job.graph["3"]["inputs"]
    assert job.graph["4"]["inputs"]["ckpt_name"] == "counterfeit_v3.safetensors"
    assert (sampler["sampler_name"], job.graph["5"]["inputs"]["width"]) == ("dpmpp_2m", 768)
    assert job.graph["6"]["inputs"]["text"] == "rooftop, neon lighting"
    assert job.graph["7"]["inputs"]["text"] == "worst quality"
    first_frame = ImageSource(path="inputs/first.png", sha256="0" * 64, extension="png")
    [clip] = jobs_create(user=owner, project=styled, template=shipped("weightless-segment"), init_image=first_frame)
    [video] = [n for n in clip.graph.values() if n["class_type"] == "CreateVideo"]
    assert video["inputs"]["fps"] == 12


def test_several_jobs_of_a_template_without_a_seed_input_are_refused(styled, owner, enqueued):
    still = {k: v for k, v in ANIMATION.items() if k != "2"}
    still["3"] = {**still["3"], "inputs": {**still["3"]["inputs"], "images": ["1", 0]}}
    template = _import(styled, owner, still)
    with pytest.raises(JobError, match=r"no seed input.*bind one.*or ask for count 1"):
        jobs_create(user=owner, project=styled, template=template, count=3)
    with pytest.raises(JobError, match="no seed input"):
        jobs_create(user=owner, project=styled, template=template, seeds=[1, 2])
    assert len(jobs_create(user=owner, project=styled, template=template, count=1)) == 1


def test_count_and_seeds_that_disagree_are_refused(styled, owner, enqueued):
    template = _import(styled, owner, ANIMATION)
    with pytest.raises(JobError, match="not both"):
        jobs_create(user=owner, project=styled, template=template, seeds=[1, 2], count=3)
