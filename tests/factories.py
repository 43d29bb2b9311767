"""Factories for tests. Rows that have services are built through them, so tests see real rows."""

from __future__ import annotations

import io

import factory
from django.contrib.auth import get_user_model
from PIL import Image

from characters.models import Character, CharacterVersion, Variation, VariationKind
from generation.models import Asset, Backend, Job, WorkflowTemplate
from projects.models import Project
from projects.services import project_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.test")
    password = factory.django.Password("pw-for-tests-123")


def make_project(owner, name: str = "Skyline Academy", **fields) -> Project:
    return project_create(owner=owner, name=name, **fields)


class CharacterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Character

    project = None
    name = factory.Sequence(lambda n: f"Kai {n}")
    slug = factory.Sequence(lambda n: f"kai-{n}")
    design_prompt = "1boy, silver hair, amber eyes, navy school uniform"
    trigger_word = "kaiN"


class VersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CharacterVersion

    character = factory.SubFactory(CharacterFactory)
    name = factory.Sequence(lambda n: f"Age {n}")
    slug = factory.Sequence(lambda n: f"age-{n}")
    prompt_delta = "older, taller"


class VariationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Variation

    character = factory.SubFactory(CharacterFactory)
    kind = VariationKind.OUTFIT
    name = factory.Sequence(lambda n: f"Outfit {n}")
    slug = factory.Sequence(lambda n: f"outfit-{n}")
    prompt_delta = "winter coat"


class BackendFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Backend

    name = factory.Sequence(lambda n: f"gpu-{n}")
    url = factory.Sequence(lambda n: f"http://127.0.0.1:{18000 + n}")


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WorkflowTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    slug = factory.Sequence(lambda n: f"template-{n}")
    graph = factory.LazyFunction(
        lambda: {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}}}
    )


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    project = None
    prompt = "1boy, silver hair"
    seed = factory.Sequence(lambda n: 1000 + n)


class AssetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Asset

    project = None
    job = None
    file = factory.django.FileField(filename="out.png", data=b"not-really-png")
    mime = "image/png"
    sha256 = factory.Sequence(lambda n: f"{n:064x}")


def png_bytes(
    width: int = 64, height: int = 64, colour: tuple[int, int, int] = (200, 40, 40), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()
