"""Issue 20's acceptance on the fake ComfyUI, through the API: an episode of 3 scenes × 2 segments generated,
chained by last frame, corrected at a discontinuous join, carried by memory, surviving a killed worker,
and assembled into one MP4 with 3 chapters; bad input answered with a 400."""

from __future__ import annotations

import itertools

import av
import numpy as np
import pytest
from PIL import Image

from generation import tasks
from generation.assembly_task import assembly_run
from generation.film.frames import last_frame
from generation.models import Asset
from generation.services.reconcile import reconcile
from quality.models import JoinEvaluation, SceneRun, Segment
from quality.movie.plan import segment_length
from quality.services.scoring import job_score
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import SEGMENT, cast, drive_scene, movie_project, received_first_frame
from tests.support.personas import api_client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


def pixels(image_file) -> np.ndarray:
    with image_file.open("rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_an_episode_of_three_chained_scenes_is_generated_and_assembled(fake, engine, owner):
    project = movie_project(owner)
    kai = cast(project, owner)
    frames, fps = segment_length(template=shipped(SEGMENT), project=project)
    api = api_client_for(owner)
    runs, announced = engine
    episode = api.post("/api/v1/episodes/", {"project": project.pk, "title": "Pilot"}, format="json").json()
    # bad input first: an episode with no scenes cannot be assembled; a scene needs a duration
    empty = api.post(f"/api/v1/episodes/{episode['id']}/assemble/", {}, format="json")
    assert empty.status_code == 400 and "no scenes" in str(empty.json())
    zero = {"episode": episode["id"], "title": "Zero", "duration_seconds": 0, "characters": [kai.pk]}
    assert api.post("/api/v1/scenes/", zero, format="json").status_code == 400
    scenes = []
    for title in ("Rooftop", "Street", "Station"):
        body = {"episode": episode["id"], "title": title, "duration_seconds": (2 * frames - 1) / fps}
        answer = api.post("/api/v1/scenes/", {**body, "characters": [kai.pk]}, format="json")
        assert answer.status_code == 201, answer.json()
        scenes.append(answer.json()["id"])
    lonely = api.post("/api/v1/scenes/", {"episode": episode["id"], "title": "Nobody"}, format="json").json()
    refused = api.post(f"/api/v1/scenes/{lonely['id']}/generate/", {"template": SEGMENT}, format="json")
    assert refused.status_code == 400 and "no character" in str(refused.json())
    shipped("weightless-image")
    wrong = api.post(f"/api/v1/scenes/{scenes[0]}/generate/", {"template": "weightless-image"}, format="json")
    assert wrong.status_code == 400 and "kind segment" in str(wrong.json())
    blind = shipped(SEGMENT)  # a segment template without an image input
    blind.pk, blind.project, blind.slug = None, project, "blind-segment"
    blind.bindings = {k: v for k, v in blind.bindings.items() if k != "init_image"}
    blind.save()
    no_input = api.post(f"/api/v1/scenes/{scenes[0]}/generate/", {"template": "blind-segment"}, format="json")
    assert no_input.status_code == 400 and "has no image input" in str(no_input.json())
    assert not SceneRun.objects.exists()
    api.delete(f"/api/v1/scenes/{lonely['id']}/")
    # scene 1 remembers Kai's red coat; scene 2 sets nothing and carries it
    memory = {"characters": {str(kai.pk): {"outfit": "red coat"}}, "story": {"tension": 6}}
    assert api.patch(f"/api/v1/scenes/{scenes[0]}/memory/", {"memory": memory}, format="json").status_code == 200

    def generate(scene_id: int) -> SceneRun:
        answer = api.post(f"/api/v1/scenes/{scene_id}/generate/", {"template": SEGMENT}, format="json")
        assert answer.status_code == 201, answer.json()
        assert len(answer.json()["segments"]) == 2 and len(answer.json()["jobs"]) == 1
        return SceneRun.objects.get(pk=answer.json()["run"]["id"])

    assert drive_scene(generate(scenes[0]), engine).status == "complete"

    # scene 2: its second segment is asked for a cut at its first frame: the join fails and is regenerated
    second = generate(scenes[1])
    Segment.objects.filter(run=second, number=2).update(params={"discontinuity": 1.0})
    assert drive_scene(second, engine).status == "complete"
    cut = Segment.objects.get(run=second, number=2)
    verdicts = list(JoinEvaluation.objects.filter(segment=cut).order_by("attempt").values_list("passed", flat=True))
    assert verdicts[0] is False and verdicts[-1] is True and cut.attempts == len(verdicts)

    # scene 3: the worker is killed between scoring segment 1 and stepping the chain; reconcile resumes it
    third = generate(scenes[2])
    head = Segment.objects.get(run=third, number=1)
    runs.take(), announced.take()
    assert tasks.job_run(head.job_id) == "succeeded"
    job_score(job_id=head.job_id)
    announced.take()
    report = reconcile(enqueue_run=runs, enqueue_adopt=lambda job_id: None)
    assert report.hooks["quality.tasks.scenes_reconcile"] == "1 running scene run(s) checked"
    # segment 1 was concluded: segment 2 submitted (or segment 1 again, had its scene join failed)
    joins = list(JoinEvaluation.objects.filter(segment=head).values("kind", "passed", "ssim", "flow_discontinuity"))
    follow = Segment.objects.get(run=third, number=2)
    assert [j["kind"] for j in joins] == ["scene"] and head.jobs.count() + follow.jobs.count() == 2, joins
    assert drive_scene(third, engine).status == "complete"

    segments = list(Segment.objects.filter(run__in=[r.pk for r in SceneRun.objects.all()]).order_by("run_id", "number"))
    assert [(s.scene_id, s.number, s.status) for s in segments] == [
        (scene, number, "complete") for scene in scenes for number in (1, 2)
    ]
    # every segment after the first starts from its predecessor's last frame: the pixels the backend received
    assert np.array_equal(received_first_frame(fake, segments[0].job), pixels(kai.references.get().image))
    for before, after in itertools.pairwise(segments):
        assert after.first_frame_id == before.last_frame_id
        assert np.array_equal(received_first_frame(fake, after.job), last_frame(before.output.file.path))
    # the second scene's prompt carries the first scene's memory
    for segment in segments[2:4]:
        assert "Kai outfit: red coat" in segment.job.prompt and "tension 6/10" in segment.job.prompt
    listed = api.get(f"/api/v1/scenes/{scenes[1]}/segments/").json()
    assert [s["status"] for s in listed] == ["complete", "complete"]
    assert all(api.get(f"/api/v1/scenes/{s}/").json()["status"] == "complete" for s in scenes)

    # assembled into one MP4: every segment's frames, minus each chained segment's duplicated first frame
    started = api.post(f"/api/v1/episodes/{episode['id']}/assemble/", {"container": "mp4"}, format="json")
    assert started.status_code == 202, started.json()
    assert announced.take() == [("generation.assembly_task.assembly_task", started.json()["id"])]
    assert "frames, encoded" in assembly_run(assembly_id=started.json()["id"])  # what the worker runs
    film_id = api.get(f"/api/v1/episodes/{episode['id']}/").json()["film"]
    assert film_id is not None
    film = Asset.objects.get(pk=film_id)
    expected = sum(s.output.frames for s in segments) - (len(segments) - 1)
    assert film.frames == expected == 6 * frames - 5
    assert decoded_frames(film.file.path) == expected
    body = api.get(f"/api/v1/assets/{film_id}/").json()
    assert body["mime"] == "video/mp4" and body["frames"] == expected
    chapters = body["chapters"]
    assert [c["title"] for c in chapters] == ["Rooftop", "Street", "Station"]
    assert chapters[0]["start"] == 0 and chapters[-1]["end"] == pytest.approx(expected / fps, abs=0.1)
