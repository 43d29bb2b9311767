"""Issue 18's acceptance on the Generate page, in real Chromium against the fake ComfyUI: pick a
character's reference and an earlier output for a workflow's two image inputs, change the sampler
and steps from the backend's lists, submit, and watch the result appear in the output pane."""

from __future__ import annotations

import io
import json
import re

import pytest

from characters.services import character_add_reference
from generation.models import Asset, InputImage, Job, JobStatus
from generation.services.templates import template_import
from tests.browser.conftest import ROOT, screenshot
from tests.browser.test_studio import fake, log_in, off_the_loop, producer  # noqa: F401 (fixtures)
from tests.factories import AssetFactory, CharacterFactory, make_project, png_bytes
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def two_image_template(project, user):
    """The weightless image-to-image graph with a second LoadImage (the reference) blended in."""
    shipped = json.loads((ROOT / "workflows" / "weightless-img2img.json").read_text())
    graph, bindings = shipped["graph"], dict(shipped["bindings"])
    graph["7"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}, "_meta": {"title": "Reference"}}
    graph["8"] = {
        "class_type": "ImageScale",
        "inputs": {"image": ["7", 0], "upscale_method": "bilinear", "width": 512, "height": 512, "crop": "center"},
        "_meta": {"title": "Fit reference"},
    }
    graph["9"] = {
        "class_type": "ImageBlend",
        "inputs": {"image1": ["4", 0], "image2": ["8", 0], "blend_factor": 0.3, "blend_mode": "normal"},
        "_meta": {"title": "Reference blend"},
    }
    graph["5"]["inputs"]["image"] = ["9", 0]
    bindings["reference_image"] = [{"node": "7", "class": "LoadImage", "input": "image"}]
    for size in ("width", "height"):
        bindings[size] = [*bindings[size], {"node": "8", "class": "ImageScale", "input": size, "style": True}]
    return template_import(
        project=project, name="Init and reference", graph_json=graph, kind="img2img", user=user, bindings=bindings
    )


def test_pick_images_change_sampler_and_steps_and_watch_the_result(page, producer, fake, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    project = make_project(producer, name="Skyline Academy")
    style = project.style
    style.width = style.height = 128
    style.sampler, style.draft_steps, style.draft_cfg, style.production_cfg = "euler", 12, 7.0, 9.0
    style.save()
    kai = CharacterFactory(project=project, name="Kai", trigger_word="kaiSky")
    reference = character_add_reference(character=kai, upload=io.BytesIO(png_bytes(colour=(30, 60, 200))))
    earlier = AssetFactory(project=project, file__filename="earlier.png", file__data=png_bytes(colour=(200, 90, 20)))
    template = two_image_template(project, producer)
    fake.configure(holds={"ImageAddNoise"})  # the result arrives while the page watches

    log_in(page)
    page.goto(f"/generate/?project={project.pk}&template={template.pk}&character={kai.pk}")
    page.wait_for_selector("#live-dot.on")
    init = f"#picker-init_image input[value='asset:{earlier.pk}']"
    ref = f"#picker-reference_image input[value='reference:{reference.pk}']"
    page.click(f"#picker-init_image label.pick:has(input[value='asset:{earlier.pk}'])")
    page.click(f"#picker-reference_image label.pick:has(input[value='reference:{reference.pk}'])")
    # The samplers listed are the backend's (its /object_info), the style's chosen.
    assert page.input_value("#id_sampler") == "euler"
    assert "dpmpp_2m" in page.eval_on_selector_all("#id_sampler option", "options => options.map(o => o.value)")
    page.select_option("#id_sampler", "dpmpp_2m")
    page.fill("#id_steps", "21")
    page.press("#id_steps", "Tab")
    page.wait_for_selector("#generate-preview dd:text-is('dpmpp_2m')")
    page.wait_for_selector("#generate-preview dd:text-is('21')")
    assert page.is_checked(init) and page.is_checked(ref)  # the preview's answers left the pickers alone
    # Production: the CFG left alone follows the preset; the sampler and steps changed stay.
    page.select_option("#id_mode", "production")
    page.wait_for_selector("#generate-controls input[name=cfg][value='9.0']")
    assert page.input_value("#id_sampler") == "dpmpp_2m" and page.input_value("#id_steps") == "21"
    screenshot(page, "30-generate-pickers")

    page.click("#submit-generate")
    page.wait_for_url(re.compile(r"/generate/\?.*submitted=\d+"))
    job_id = int(re.search(r"submitted=(\d+)", page.url)[1])
    assert page.is_checked(init) and page.is_checked(ref)  # the same choices, ready for the next one
    row = f"#generate-output #job-row-{job_id}"
    page.wait_for_selector(f"{row} [data-status]:has-text('Running')", timeout=30_000)
    assert page.query_selector(f"#job-outputs-{job_id} .tile") is None
    wait_until(lambda: fake.held_nodes(), timeout=15, what="the fake to hold the grain node")
    fake.release()
    page.wait_for_selector(f"#job-outputs-{job_id} .tile", timeout=30_000)
    page.wait_for_selector(f"{row} [data-status]:has-text('Succeeded')")
    screenshot(page, "31-generate-output-pane")

    job = off_the_loop(lambda: Job.objects.get(pk=job_id))
    assert job.status == JobStatus.SUCCEEDED
    assert job.mode == "production" and job.overrides == {"sampler": "dpmpp_2m", "steps": 21}
    inputs = {item["parameter"]: item["path"] for item in job.params["inputs"]}
    assert inputs == {"init_image": earlier.file.name, "reference_image": reference.image.name}
    output = off_the_loop(lambda: Asset.objects.filter(job_id=job_id).first())
    assert page.query_selector(f"#job-outputs-{job_id} .tile[data-asset='{output.pk}']") is not None
    assert not page.console_errors  # type: ignore[attr-defined]


def test_a_file_chosen_in_a_picker_is_uploaded_and_chosen_at_once(page, producer, stack, settings, tmp_path):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    project = make_project(producer, name="Harbour Lights")
    template = two_image_template(project, producer)
    path = tmp_path / "sketch.png"
    path.write_bytes(png_bytes(colour=(90, 200, 120)))

    log_in(page)
    page.goto(f"/generate/?project={project.pk}&template={template.pk}")
    page.wait_for_selector("#picker-init_image")
    page.fill("#id_prompt", "a harbour at dawn")
    page.set_input_files("#upload-init_image", str(path))
    page.wait_for_selector("#picker-init_image [data-pick-group=uploads] input:checked", state="attached")
    image = off_the_loop(lambda: InputImage.objects.get(project=project))
    assert page.get_attribute("#picker-init_image input:checked", "value") == f"upload:{image.pk}"
    assert page.input_value("#id_prompt") == "a harbour at dawn"  # the upload's answer left the form alone
    # The other input still has nothing chosen (no character: no automatic reference).
    assert page.get_attribute("#picker-reference_image input:checked", "value") == ""

    # LoRA rows: no backend has listed any, so a name is typed; the preview follows a row added and removed.
    assert page.locator("#generate-loras [data-lora-row]").count() == 0
    page.click("#generate-loras [data-lora-add]")
    page.fill("#generate-loras [data-lora-row] [data-lora-name]", "kai_v2.safetensors")
    page.press("#generate-loras [data-lora-row] [data-lora-name]", "Tab")
    page.wait_for_selector("#generate-preview dd:has-text('kai_v2.safetensors (1.0)')")
    page.click("#generate-loras [data-lora-remove]")
    page.wait_for_selector("#generate-preview dd:has-text('kai_v2.safetensors')", state="detached")
    assert page.locator("#generate-loras [data-lora-row]").count() == 0
    assert not page.console_errors  # type: ignore[attr-defined]
