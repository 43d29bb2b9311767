"""The admin as a whole: every model registered and rendering, and each user sees only their projects."""

from __future__ import annotations

import io
import struct
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import models
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from characters.models import ReferenceEmbedding
from characters.services import character_add_reference
from generation.models import Assembly, BackendObjectInfo, BackendUpload, JobLogLine
from generation.services.inputs import input_image_create
from projects.admin_scope import ProjectScopedAdmin
from projects.models import Project
from projects.services import episode_create, project_member_set, scene_create
from quality.models import (
    JoinEvaluation,
    Orchestration,
    PhaseGate,
    PhaseRun,
    QualityFeedback,
    QualityGate,
    QualityScore,
    SceneRun,
    Segment,
)
from tests.factories import (
    AssetFactory,
    BackendFactory,
    CharacterFactory,
    JobFactory,
    TemplateFactory,
    UserFactory,
    VariationFactory,
    VersionFactory,
    make_project,
    png_bytes,
)
from tower.models import ApiToken, hash_token, new_raw_token
from training.models import CaptionRun, DatasetImage, HeldImage, IngestBatch, LoraModel, TrainingJob

OUR_APPS = ("tower", "projects", "characters", "generation", "quality", "training")
# Edited inside their project's page, never on their own.
INLINE_ONLY = {
    "projects.generationstyle",
    "projects.membership",
    "projects.scenememorychange",
    "quality.phaserun",
    "quality.segment",
    "characters.characterattribute",
}
# Machine state with nothing to curate: sign-in failures are hashed keys that expire by themselves.
# An evaluation is an API answer kept for its requester only, not something to curate.
NOT_IN_ADMIN = {"tower.signinfailure", "quality.evaluation"}


def our_registered_models() -> list[type[models.Model]]:
    return sorted(
        (m for m in admin.site._registry if m._meta.app_label in OUR_APPS),
        key=lambda m: m._meta.label,
    )


def admin_url(obj_or_model: Any, view: str = "changelist") -> str:
    opts = obj_or_model._meta
    args = [obj_or_model.pk] if view in {"change", "delete", "history"} else []
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def build_world(owner, *, tag: str) -> dict[type[models.Model], models.Model]:
    """One row of every model, all in one project of ``owner``, with real image files."""
    from django.core.files.base import ContentFile

    project = make_project(owner, name=f"Project {tag}")
    episode = episode_create(project=project, title=f"Pilot {tag}")
    scene = scene_create(episode=episode, title=f"Opening {tag}")
    character = CharacterFactory(project=project, name=f"Kai {tag}")
    character.scenes.add(scene)
    reference = character_add_reference(
        character=character, upload=io.BytesIO(png_bytes(colour=(10, 20, 30))), original_name="kai.png"
    )
    embedding = ReferenceEmbedding.objects.create(
        reference=reference, model_id="ccip", dim=4, vector=struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)
    )
    backend = BackendFactory()
    object_info = BackendObjectInfo.objects.create(
        backend=backend, data={"KSampler": {}, "SaveImage": {}}, digest=f"{tag:0>64}", fetched_at=timezone.now()
    )
    template = TemplateFactory(project=project)
    job = JobFactory(project=project, character=character, backend=backend, template=template)
    log_line = JobLogLine.objects.create(job=job, message=f"submitted {tag}")
    asset = AssetFactory(project=project, job=job)
    score = QualityScore.objects.create(
        asset=asset, metric="ccip", value=0.8, threshold=0.7, passed=True, character=character
    )
    gate = QualityGate.objects.create(job=job, stage="post_gen", passed=True)
    phase_gate = PhaseGate.objects.create(project=project, phase=1, pass_ratio=0.9, sample_size=10)
    dataset_image = DatasetImage(character=character, sha256=f"{tag:0>64}", source="upload", width=64, height=64)
    dataset_image.image.save("d.png", ContentFile(png_bytes(colour=(1, 2, 3))), save=False)
    dataset_image.save()
    training = TrainingJob.objects.create(character=character, config={"lr": 1e-4}, log="step 1: loss 0.1")
    caption_run = CaptionRun.objects.create(character=character, run_id=f"{tag:0>32}", method="tags", total=3)
    batch = IngestBatch.objects.create(
        project=project, character=character, source="upload", source_ref=f"shots-{tag}.zip", report={"added": 1}
    )
    held = HeldImage(batch=batch, reason="unassigned", sha256=f"{tag:0>64}", source="upload", width=64, height=64)
    held.image.save("h.png", ContentFile(png_bytes(colour=(4, 5, 6))), save=False)
    held.save()
    lora = LoraModel.objects.create(
        project=project, character=character, training_job=training, name=f"{tag}.safetensors"
    )
    input_image, _ = input_image_create(
        project=project, user=owner, upload=io.BytesIO(png_bytes(colour=(7, 8, 9))), original_name="start.png"
    )
    upload = BackendUpload.objects.create(backend=backend, name=f"tower-{tag:0>24}.png", sha256=f"{tag:0>64}")
    orchestration = Orchestration.objects.create(project=project, character=character, prompt=f"rooftop {tag}")
    PhaseRun.objects.create(orchestration=orchestration, phase=1, status="running", attempts=1).jobs.add(job)
    run = SceneRun.objects.create(scene=scene, template=template, segments_planned=2)
    segment = Segment.objects.create(run=run, scene=scene, number=1, job=job, output=asset, status="complete")
    join = JoinEvaluation.objects.create(
        project=project, scene=scene, kind="segment", segment=segment, before=asset, after=asset, ssim=0.7, passed=True
    )
    feedback = QualityFeedback.objects.create(
        project=project, template=template, segment=segment, job=job, scores={"join_ssim": 0.7}, passed=True
    )
    assembly = Assembly.objects.create(project=project, episode=episode, asset=asset, status="succeeded", progress=1)
    raw = new_raw_token()
    token = ApiToken.objects.create(user=owner, name=f"script {tag}", key_hash=hash_token(raw), prefix=raw[:8])
    rows = [
        project, episode, scene, character, reference, embedding, VersionFactory(character=character),
        VariationFactory(character=character), backend, object_info, template, job, log_line, asset, score, gate,
        phase_gate, dataset_image, training, lora, token, batch, caption_run, held, input_image, upload,
        orchestration, run, join, feedback, assembly,
    ]  # fmt: skip
    return {type(row): row for row in rows}


def make_staff(user, *, apps_: tuple[str, ...] = OUR_APPS):
    """Make ``user`` staff (not superuser) with every model permission of ``apps_``."""
    user.is_staff = True
    user.save()  # a full save: the factory's password is not stored until then
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=apps_))
    return user


def staff_user(username: str, *, apps_: tuple[str, ...] = OUR_APPS):
    return make_staff(UserFactory(username=username), apps_=apps_)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_every_model_of_ours_is_registered_or_edited_inline():
    ours = {m._meta.label_lower for app in OUR_APPS for m in apps.get_app_config(app).get_models()}
    registered = {m._meta.label_lower for m in our_registered_models()}
    assert ours - INLINE_ONLY - NOT_IN_ADMIN == registered
    assert len(registered) == 31


@pytest.fixture
def world(owner):
    return build_world(owner, tag="a")


@pytest.mark.django_db
@pytest.mark.parametrize("model", our_registered_models(), ids=lambda m: m._meta.label)
def test_changelist_and_change_page_render_with_data(admin_client, world, model):
    obj = world[model]
    response = admin_client.get(admin_url(model))
    assert response.status_code == 200
    result_list = list(response.context["cl"].result_list)
    assert obj in result_list

    response = admin_client.get(admin_url(obj, "change"))
    assert response.status_code == 200
    assert response.context["original"] == obj

    model_admin = admin.site._registry[model]
    if model_admin.has_add_permission(response.wsgi_request):
        assert admin_client.get(admin_url(model, "add")).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", our_registered_models(), ids=lambda m: m._meta.label)
def test_changelist_search_and_filters_render(admin_client, world, model):
    """Every search box and every filter choice answers (a bad lookup path would be a 500)."""
    response = admin_client.get(admin_url(model), {"q": "a"})
    assert response.status_code == 200
    for spec in response.context["cl"].filter_specs:
        for choice in spec.choices(response.context["cl"]):
            query = choice["query_string"]
            assert admin_client.get(admin_url(model) + query).status_code == 200, (spec.title, query)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [m for m in our_registered_models() if isinstance(admin.site._registry[m], ProjectScopedAdmin)],
    ids=lambda m: m._meta.label,
)
def test_staff_sees_only_rows_of_their_own_projects(owner, outsider, model):
    mine = build_world(owner, tag="a")
    theirs = build_world(outsider, tag="b")
    make_staff(owner)
    client = client_for(owner)

    response = client.get(admin_url(model))
    assert response.status_code == 200
    rows = list(response.context["cl"].result_list)
    assert mine[model] in rows
    assert theirs[model] not in rows

    # Another owner's row is not there at all: the admin redirects with "doesn't exist".
    response = client.get(admin_url(theirs[model], "change"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert client.get(admin_url(mine[model], "change")).status_code == 200


@pytest.mark.django_db
def test_staff_member_sees_the_project_they_belong_to_and_no_other(owner, outsider):
    shared = make_project(owner, name="Shared")
    make_project(outsider, name="Private")
    staff = staff_user("staffer")
    project_member_set(project=shared, username=staff.username, role="editor")

    response = client_for(staff).get(admin_url(Project))

    assert [p.name for p in response.context["cl"].result_list] == ["Shared"]
    assert b"Private" not in response.content


@pytest.mark.django_db
def test_staff_without_a_project_sees_an_empty_list_while_superuser_sees_all(admin_client, owner, outsider):
    make_project(owner, name="One")
    make_project(outsider, name="Two")
    staff = staff_user("nobody")

    assert list(client_for(staff).get(admin_url(Project)).context["cl"].result_list) == []
    names = {p.name for p in admin_client.get(admin_url(Project)).context["cl"].result_list}
    assert names == {"One", "Two"}


@pytest.mark.django_db
def test_a_viewer_can_look_but_not_change(owner, viewer, project):
    make_staff(viewer)
    client = client_for(viewer)

    response = client.get(admin_url(project, "change"))
    assert response.status_code == 200
    assert not response.context["has_change_permission"]
    response = client.post(admin_url(project, "change"), {"name": "Hijacked"})
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.name == "Skyline Academy"


@pytest.mark.django_db
def test_a_non_superuser_cannot_attach_rows_to_another_owners_project(owner, outsider):
    make_project(outsider, name="Theirs")
    theirs = Project.objects.get(name="Theirs")
    make_staff(owner)

    response = client_for(owner).post(
        reverse("admin:characters_character_add"),
        {
            "project": theirs.pk,
            "name": "Intruder",
            "slug": "intruder",
            "design_prompt": "x",
            "consistency_threshold": "0.7",
            "learned_negatives": "{}",
            "attributes": "{}",
            "bible": "{}",
            **_empty_inline_management(),
        },
    )

    assert response.status_code == 200
    assert "project" in response.context["adminform"].form.errors
    assert not theirs.characters.exists()


def _empty_inline_management() -> dict[str, str]:
    data = {}
    for prefix in ("references", "versions", "variations"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    return data


@pytest.mark.django_db
@pytest.mark.parametrize("model", our_registered_models(), ids=lambda m: m._meta.label)
def test_anonymous_is_sent_to_the_login_page(client, model):
    url = admin_url(model)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    assert "next=" in response["Location"]


# --- API tokens --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_token_admin_shows_name_prefix_and_user_never_the_hash(admin_client, owner, token_for):
    raw = token_for(owner, name="render farm")
    token = ApiToken.objects.get(name="render farm")

    listing = admin_client.get(admin_url(ApiToken)).content.decode()
    detail = admin_client.get(admin_url(token, "change")).content.decode()

    for page in (listing, detail):
        assert "render farm" in page
        assert token.prefix in page
        assert token.key_hash not in page
        assert raw not in page
    assert "owner" in listing
    assert admin_client.get(admin_url(ApiToken, "add")).status_code == 403


@pytest.mark.django_db
def test_staff_sees_only_their_own_tokens(owner, outsider, token_for):
    token_for(owner, name="mine")
    token_for(outsider, name="theirs")
    staff = staff_user("tokens", apps_=("tower",))
    token_for(staff, name="staff token")

    names = [t.name for t in client_for(staff).get(admin_url(ApiToken)).context["cl"].result_list]

    assert names == ["staff token"]


@pytest.mark.django_db
def test_token_use_filter(admin_client, owner, token_for):
    token_for(owner, name="fresh")
    token_for(owner, name="never")
    ApiToken.objects.filter(name="fresh").update(last_used_at=timezone.now())

    response = admin_client.get(admin_url(ApiToken), {"used": "never"})

    assert [t.name for t in response.context["cl"].result_list] == ["never"]


@pytest.mark.django_db
def test_autocomplete_offers_a_staff_user_only_their_own_rows(owner, outsider):
    from tests.factories import CharacterFactory

    CharacterFactory(project=make_project(owner, name="Mine"), name="Kai")
    CharacterFactory(project=make_project(outsider, name="Theirs"), name="Kaito")
    make_staff(owner)

    response = client_for(owner).get(
        reverse("admin:autocomplete"),
        {"app_label": "characters", "model_name": "referenceimage", "field_name": "character", "term": "Kai"},
    )

    assert response.status_code == 200
    assert [r["text"] for r in response.json()["results"]] == ["Kai"]
