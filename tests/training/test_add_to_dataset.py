"""Adding one of Tower's outputs to a character's dataset, from the gallery's asset page."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from characters.services import character_create
from generation.models import Asset
from tests.factories import JobFactory, make_project, png_bytes
from training.models import DatasetImage

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(project, owner):
    kai = character_create(project=project, name="Kai", design_prompt="silver hair")
    job = JobFactory(project=project, character=kai, prompt="kaiN, silver hair, rooftop")
    asset = Asset(project=project, job=job, mime="image/png", sha256="d" * 64, width=64, height=64)
    asset.file.save("job-1.png", ContentFile(png_bytes(colour=(9, 9, 9))), save=True)
    return {"kai": kai, "asset": asset}


def _post(client, user, asset, character):
    client.force_login(user)
    return client.post(f"/assets/{asset.pk}/add-to-dataset/", {"character": character.pk})


def test_an_editor_adds_an_output_as_a_pending_generated_image(client, member, world):
    response = _post(client, member, world["asset"], world["kai"])
    assert response.status_code == 302
    image = DatasetImage.objects.get()
    assert (image.character, image.status, image.source) == (world["kai"], "pending", "generated")
    assert image.origin_asset == world["asset"] and image.origin_job == world["asset"].job
    assert image.caption == "kaiN, silver hair, rooftop"
    assert image.image.read() == world["asset"].file.open("rb").read()  # a copy, not a link
    assert image.image.name.startswith(f"datasets/{world['kai'].pk}/")
    page = client.get(response["Location"])
    assert "pending review" in page.content.decode()


def test_the_same_image_twice_is_refused_with_a_message(client, owner, world):
    _post(client, owner, world["asset"], world["kai"])
    response = _post(client, owner, world["asset"], world["kai"])
    assert "already in Kai" in client.get(response["Location"]).content.decode()
    assert DatasetImage.objects.count() == 1


def test_viewers_outsiders_and_foreign_characters_change_nothing(client, viewer, outsider, owner, world):
    assert _post(client, viewer, world["asset"], world["kai"]).status_code == 403
    assert _post(client, outsider, world["asset"], world["kai"]).status_code == 404
    foreign = character_create(project=make_project(outsider, "Theirs"), name="Zed", design_prompt="x")
    assert _post(client, owner, world["asset"], foreign).status_code == 404
    client.logout()
    assert (
        client.post(f"/assets/{world['asset'].pk}/add-to-dataset/", {"character": world["kai"].pk}).status_code == 302
    )
    assert DatasetImage.objects.count() == 0


def test_the_asset_page_offers_the_form_only_to_editors(client, owner, viewer, world):
    client.force_login(owner)
    assert "add-to-dataset" in client.get(f"/assets/{world['asset'].pk}/").content.decode()
    client.force_login(viewer)
    assert "add-to-dataset" not in client.get(f"/assets/{world['asset'].pk}/").content.decode()


def test_a_near_identical_output_is_refused_as_a_duplicate(project, owner):
    from io import BytesIO

    import numpy as np
    from PIL import Image

    from tests.factories import AssetFactory, CharacterFactory
    from training.services import CurationError, dataset_image_add_from_asset

    kai = CharacterFactory(project=project, name="Kai")
    rng = np.random.default_rng(5)
    picture = np.kron((rng.random((8, 8, 3)) * 255).astype("uint8"), np.ones((16, 16, 1), "uint8"))

    def asset_of(array):
        out = BytesIO()
        Image.fromarray(array).save(out, format="PNG")
        asset = AssetFactory(project=project, job=JobFactory(project=project))
        asset.file.save("out.png", ContentFile(out.getvalue()))
        return asset

    first = dataset_image_add_from_asset(asset=asset_of(picture), character=kai, user=owner)
    assert len(first.phash) == 16
    brighter = np.clip(picture.astype(int) + 4, 0, 255).astype("uint8")
    with pytest.raises(CurationError, match=r"near-identical image \(#\d+, \d bits apart\) is already in Kai"):
        dataset_image_add_from_asset(asset=asset_of(brighter), character=kai, user=owner)
