"""Join pass rate before and after learning, measured on the fake ComfyUI (issue 20 item 4).

The shipped weightless segment template renders every attempt on the fake (its real graph through
Tower's bindings); its ``discontinuity`` input blends each frame towards a jump image, so the join
into the segment fails when it is strong enough. Each segment gets a random content factor c in
[0, 1) standing for how much this content makes the engine jump: the input rendered is
c × the attempt's ``discontinuity`` parameter, whose engine default here is 1 (too strong for
most content). A failing join is retried (at most ``max_join_regenerations`` times) with
``adjusted_params``; every attempt writes its feedback row. Without learning, every first attempt
starts from the default; with learning, each scene's first attempts start from
``suggested_params`` (the median of the passing attempts so far). The same 20 factors run both
ways; the pass rates are printed (``pytest -s``) and learning must raise the first-attempt rate.
"""

from __future__ import annotations

import io
import json
import os
import random
import urllib.request
from typing import Any

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from generation.models import Asset, AssetKind, Job, JobStatus, WorkflowTemplate
from generation.workflow.apply import apply
from projects.models import Episode, Project, Scene
from quality.models import JoinKind, QualityFeedback, SceneRun, Segment
from quality.movie.feedback import feedback_record
from quality.movie.joins import clip_frames, join_evaluate
from quality.movie.learning import adjusted_params, suggested_params
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import textured_png

SEGMENTS = 20
PER_SCENE = 4
DEFAULT_STRENGTH = 1.0
SIZE, FRAMES = 128, 8


class Engine:
    """The weightless segment template on the fake, submitted over its HTTP API."""

    def __init__(self, fake: FakeComfy, template: WorkflowTemplate) -> None:
        self.fake, self.template = fake, template
        fake.input_dir.mkdir(parents=True, exist_ok=True)
        (fake.input_dir / "start.png").write_bytes(textured_png(1, SIZE))

    def render(self, image: str, **params: Any) -> bytes:
        values = {"init_image": image, "frames": FRAMES, "width": SIZE, "height": SIZE, "prompt": "dusk", **params}
        graph = apply(self.template.graph, self.template.bindings, values).graph
        request = urllib.request.Request(
            f"{self.fake.url}/prompt",
            data=json.dumps({"prompt": graph}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            prompt_id = json.load(answer)["prompt_id"]
        entry = self.fake.wait_for(lambda: self.fake.history.get(prompt_id), timeout=60, what="the segment")
        [saved] = [
            f
            for out in entry["outputs"].values()
            for files in out.values()
            for f in files
            if isinstance(f, dict) and "filename" in f
        ]
        return (self.fake.output_dir / saved.get("subfolder", "") / saved["filename"]).read_bytes()


def run_scenes(engine: Engine, project: Project, *, learning: bool, factors: list[float]) -> dict[str, Any]:
    template = engine.template
    episode = Episode.objects.create(project=project, number=1, title="Pilot")
    before_data = engine.render("start.png", seed=1)
    before = Asset.objects.create(project=project, file=ContentFile(before_data, name="b.mp4"), kind=AssetKind.VIDEO)
    frame = io.BytesIO()
    Image.fromarray(clip_frames(before_data, tail=1)[-1]).save(frame, format="PNG")
    (engine.fake.input_dir / "last.png").write_bytes(frame.getvalue())
    first_passed, final_passed, attempts, starts = 0, 0, 0, []
    for i, factor in enumerate(factors):
        if i % PER_SCENE == 0:
            scene = Scene.objects.create(episode=episode, number=i // PER_SCENE + 1)
            run = SceneRun.objects.create(scene=scene, template=template, segments_planned=PER_SCENE + 1)
            suggested = suggested_params(project=project, template=template) if learning else {}
        params = {"discontinuity": suggested.get("discontinuity", DEFAULT_STRENGTH)}
        starts.append(params["discontinuity"])
        segment = Segment.objects.create(run=run, scene=scene, number=i % PER_SCENE + 2, params=params)
        for attempt in range(1, project.max_join_regenerations + 2):
            data = engine.render("last.png", seed=attempt, discontinuity=factor * params["discontinuity"])
            job = Job.objects.create(
                project=project,
                template=template,
                scene=scene,
                status=JobStatus.SUCCEEDED,
                params=params,
                overrides=params,
            )
            after = Asset.objects.create(
                project=project, job=job, file=ContentFile(data, name="a.mp4"), kind=AssetKind.VIDEO
            )
            join = join_evaluate(
                scene=scene, segment=segment, before=before, after=after, kind=JoinKind.SEGMENT, attempt=attempt
            )
            feedback_record(segment=segment, job=job, attempt=attempt, join=join, passed=join.passed)
            attempts += 1
            if join.passed:
                first_passed += attempt == 1
                final_passed += 1
                break
            params = adjusted_params(template=template, params=params, join=join, attempt=attempt)
    n = len(factors)
    return {
        "first": first_passed / n,
        "final": final_passed / n,
        "attempts": attempts / n,
        "starts": sorted(set(starts)),
    }


@pytest.fixture
def engine(db, tmp_path):
    with FakeComfy(root=tmp_path / "comfyui") as fake:
        yield Engine(fake, shipped("weightless-segment"))


def test_learning_raises_the_first_attempt_join_pass_rate(engine, owner, capsys):
    rng = random.Random(20)
    factors = [rng.random() for _ in range(SEGMENTS)]
    without = run_scenes(engine, make_project(owner, name="Without"), learning=False, factors=factors)
    learned_project = make_project(owner, name="With")
    with_learning = run_scenes(engine, learned_project, learning=True, factors=factors)
    with capsys.disabled():
        print(f"\njoin pass rate, {SEGMENTS} segments, content factors {min(factors):.2f}–{max(factors):.2f}")
        print(f"load average {os.getloadavg()[0]:.2f}")
        for name, r in (("without learning", without), ("with learning", with_learning)):
            print(
                f"  {name:17} first attempt {r['first']:.0%}, after retries {r['final']:.0%}, "
                f"{r['attempts']:.2f} attempts a segment, first-attempt discontinuity {r['starts']}"
            )
    assert with_learning["first"] > without["first"]
    assert with_learning["attempts"] < without["attempts"]
    # Every suggestion came from passing attempts: the learned start is a value some passing attempt used.
    rows = QualityFeedback.objects.filter(project=learned_project, passed=True).values_list("params", flat=True)
    passing = {params["discontinuity"] for params in rows}
    assert set(with_learning["starts"]) - {DEFAULT_STRENGTH} <= passing
