"""POST /api/v1/quality/evaluate, GET /api/v1/jobs/{id}/quality, POST /api/v1/quality/phase-gate/{n}."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from characters.services import character_create
from quality.models import QualityGate, QualityScore
from tests.factories import AssetFactory, JobFactory, png_bytes

pytestmark = pytest.mark.django_db

EVALUATE = "/api/v1/quality/evaluate"


def upload(data: bytes, name: str = "x.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def mp4(frames: int, size: int = 64) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            array = np.full((size, size, 3), 30 + 5 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def test_an_uploaded_image_gets_its_metric_results(api_member, project, models, evaluation_worker):
    response = api_member.post(EVALUATE, {"project": project.pk, "file": upload(png_bytes())}, format="multipart")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["frames"] == 1
    aesthetic = next(r for r in body["results"] if r["metric"] == "aesthetic")
    assert aesthetic["status"] == "ok" and aesthetic["model_id"] == "laion-aesthetic+clip-vit-l-14"
    assert aesthetic["threshold"] == project.threshold_aesthetic
    assert aesthetic["passed"] is False  # the tiny head scores ~0.03 against 5.5


def test_a_video_with_no_face_records_no_face_found(api_owner, project, models, evaluation_worker):
    character = character_create(project=project, name="Kai", design_prompt="1boy")
    from characters.services import character_add_reference

    # A bright square: a face to the tiny detector (photoreal), so the reference embeds.
    image = np.zeros((128, 128, 3), np.uint8)
    image[40:80, 40:80] = 240
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    buffer.seek(0)
    project.art_kind = "photoreal"
    project.save()
    character_add_reference(character=character, upload=buffer, original_name="kai.png")

    response = api_owner.post(
        EVALUATE,
        {"project": project.pk, "character": character.pk, "file": upload(mp4(6), "clip.mp4")},
        format="multipart",
    )

    assert response.status_code == 200, response.content
    results = {r["metric"]: r for r in response.json()["results"]}
    assert results["character_similarity"]["status"] == "no_subject"
    assert results["character_similarity"]["value"] is None
    assert "no face found" in results["character_similarity"]["details"]["reason"]
    assert results["temporal_flicker"]["status"] == "ok"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"definitely not media", "not an image or video"),
        ("single", "single frame"),
        ("huge", "bytes; at most"),
    ],
)
def test_bad_media_is_a_400_with_a_clear_message(
    api_owner, project, models, settings, evaluation_worker, data, message
):
    settings.UPLOAD_MAX_BYTES = 4096
    if data == "single":
        data = mp4(1)
    elif data == "huge":
        data = png_bytes(256, 256) + b"\0" * 5000
    response = api_owner.post(EVALUATE, {"project": project.pk, "file": upload(data)}, format="multipart")

    assert response.status_code == 400
    assert message in str(response.json())


def test_a_bad_asset_records_a_failed_evaluation(api_owner, project, models, evaluation_worker):
    asset = AssetFactory(project=project, job=JobFactory(project=project), file__data=b"broken")

    response = api_owner.post(EVALUATE, {"asset": asset.pk}, format="multipart")

    assert response.status_code == 400
    row = QualityScore.objects.get(asset=asset)
    assert (row.metric, row.status, row.passed, row.value) == ("media", "error", False, None)


def test_an_asset_evaluation_stores_its_scores(api_owner, project, models, evaluation_worker):
    asset = AssetFactory(project=project, job=JobFactory(project=project), file__data=png_bytes())

    response = api_owner.post(EVALUATE, {"asset": asset.pk}, format="json")

    assert response.status_code == 200, response.content
    assert QualityScore.objects.filter(asset=asset, metric="aesthetic", status="ok").exists()


def test_evaluate_access(api_viewer, api_outsider, api_anonymous, project, models):
    asset = AssetFactory(project=project, job=JobFactory(project=project), file__data=png_bytes())
    assert api_viewer.post(EVALUATE, {"asset": asset.pk}, format="json").status_code == 403
    assert api_outsider.post(EVALUATE, {"asset": asset.pk}, format="json").status_code == 404
    outsider_upload = {"project": project.pk, "file": upload(png_bytes())}
    assert api_outsider.post(EVALUATE, outsider_upload, format="multipart").status_code == 404
    assert api_anonymous.post(EVALUATE, {"asset": asset.pk}, format="json").status_code in (401, 403)


def test_job_quality_lists_scores_and_gates(api_owner, api_member, api_viewer, api_outsider, api_anonymous, project):
    job = JobFactory(project=project)
    asset = AssetFactory(project=project, job=job, file__data=png_bytes())
    QualityScore.objects.create(asset=asset, metric="aesthetic", value=6.1, threshold=5.5, passed=True, model_id="m")
    QualityGate.objects.create(job=job, stage="post_gen", passed=True, details={"outcome": "passed"})
    url = f"/api/v1/jobs/{job.pk}/quality"

    for client in (api_owner, api_member, api_viewer):
        response = client.get(url)
        assert response.status_code == 200
        body = response.json()
        assert body["gates"][0]["details"]["outcome"] == "passed"
        assert body["assets"][0]["scores"][0]["metric"] == "aesthetic"
        assert body["assets"][0]["scores"][0]["model_id"] == "m"
    assert api_outsider.get(url).status_code == 404
    assert api_anonymous.get(url).status_code in (401, 403)
    assert api_owner.get("/api/v1/jobs/999999/quality").status_code == 404
