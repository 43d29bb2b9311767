"""Ingestion through the task: ComfyUI output folders scanned, their prompts recovered, tricks refused."""

from __future__ import annotations

import json

import pytest

from tests.factories import AssetFactory, JobFactory
from tests.training.ingest.helpers import (
    api_graph,
    comfy_png,
    png,
    start_and_run,
    texture,
)
from training.ingest import services
from training.models import DatasetImage, DatasetSource, IngestBatch, IngestStatus


@pytest.fixture
def comfy_root(settings, tmp_path):
    root = tmp_path / "comfy" / "output"
    (root / "2025-06-01").mkdir(parents=True)
    settings.TOWER_COMFYUI_OUTPUT_DIRS = [str(root)]
    return root


def test_comfy_scan_recovers_prompts_and_links_jobs(comfy_root, project, owner, hana, classifier, enqueued):
    # One output Tower stored as an asset (matched by bytes), one whose graph a job submitted, one unknown.
    by_asset = comfy_png(texture(1), api_graph("1girl, hana, red scarf", 11))
    job_a = JobFactory(project=project, prompt="1girl, hana, red scarf", seed=11, graph=api_graph("x", 11))
    asset = AssetFactory(project=project, job=job_a, sha256=__import__("hashlib").sha256(by_asset).hexdigest())
    graph = api_graph("1girl, hana, school uniform", 22)
    job_b = JobFactory(project=project, prompt="1girl, hana, school uniform", seed=22, graph=graph)
    JobFactory(project=project, prompt="1girl, hana, school uniform", seed=23, graph=api_graph("other", 23))
    by_graph_graph = json.loads(json.dumps(graph))
    by_graph_graph["6"]["_meta"] = {"title": "Positive"}  # ComfyUI may add titles; still the same graph
    (comfy_root / "2025-06-01" / "ComfyUI_00001_.png").write_bytes(by_asset)
    (comfy_root / "2025-06-01" / "ComfyUI_00002_.png").write_bytes(comfy_png(texture(2), by_graph_graph))
    (comfy_root / "ComfyUI_00003_.png").write_bytes(comfy_png(texture(3), api_graph("1boy, stranger", 33)))
    (comfy_root / "ComfyUI_00004_.png").write_bytes(png(texture(4)))
    (comfy_root / "clip.mp4").write_bytes(b"not scanned")

    batch = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))

    assert batch.status == IngestStatus.SUCCEEDED and batch.report["added"] == 4
    assert batch.report["other_files_ignored"] == 1
    rows = {i.source_ref: i for i in DatasetImage.objects.filter(ingest_batch=batch)}
    first = rows["2025-06-01/ComfyUI_00001_.png"]
    assert (first.origin_asset, first.origin_job, first.caption) == (asset, job_a, "1girl, hana, red scarf")
    second = rows["2025-06-01/ComfyUI_00002_.png"]
    assert (second.origin_asset, second.origin_job) == (None, job_b)
    assert second.caption == "1girl, hana, school uniform" and second.caption_source == "tags"
    third = rows["ComfyUI_00003_.png"]
    assert (third.origin_job, third.caption, third.source) == (None, "1boy, stranger", DatasetSource.COMFY_SCAN)
    assert rows["ComfyUI_00004_.png"].caption == "" and rows["ComfyUI_00004_.png"].caption_source == ""
    # The folder is only read.
    assert (comfy_root / "ComfyUI_00004_.png").exists()

    again = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))
    assert (again.report["added"], again.report["duplicate"]) == (0, 4)
    assert again.status == IngestStatus.NOTHING_ADDED and "4 duplicates" in again.error_message


@pytest.mark.parametrize("subfolder", ["../", "../../etc", "/etc", "2025-06-01/../../"])
def test_comfy_folder_tricks_are_refused(comfy_root, project, owner, hana, enqueued, subfolder):
    with pytest.raises(services.IngestError, match="subfolder"):
        services.ingest_batch_start(
            project=project, user=owner, character=hana, folder_root=str(comfy_root), subfolder=subfolder
        )
    assert not IngestBatch.objects.exists()


def test_comfy_folder_outside_the_allowed_list_is_refused(comfy_root, tmp_path, project, owner, hana, enqueued):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(services.IngestError, match="not one of the allowed ComfyUI output folders"):
        services.ingest_batch_start(project=project, user=owner, character=hana, folder_root=str(elsewhere))
    # A symlinked subfolder that leads outside is refused too.
    (comfy_root / "escape").symlink_to(elsewhere)
    with pytest.raises(services.IngestError, match="leads outside"):
        services.ingest_batch_start(
            project=project, user=owner, character=hana, folder_root=str(comfy_root), subfolder="escape"
        )
    assert not IngestBatch.objects.exists()


def test_comfy_scan_skips_file_links_leading_outside(comfy_root, tmp_path, project, owner, hana, classifier, enqueued):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(texture(5)))
    (comfy_root / "link.png").symlink_to(secret)
    (comfy_root / "real.png").write_bytes(png(texture(6)))
    batch = start_and_run(project, owner, character=hana, folder_root=str(comfy_root))
    assert batch.report["added"] == 1
    assert any("link.png: a link leading outside" in m for m in batch.report["messages"])
    assert list(DatasetImage.objects.values_list("source_ref", flat=True)) == ["real.png"]
