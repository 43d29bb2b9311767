"""The OpenAPI schema: valid, committed, served to signed-in users, and true to real responses."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from django.conf import settings as django_settings
from django.core.management import call_command
from django.shortcuts import resolve_url

from characters.services import character_add_reference, character_create
from tests.factories import AssetFactory, JobFactory, png_bytes

SNAPSHOT = Path(django_settings.BASE_DIR) / "tower" / "openapi.yaml"
REGENERATE = "python manage.py spectacular --file tower/openapi.yaml"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    """The schema as the code describes it today; the command fails on any warning or error."""
    target = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    return target.read_text(encoding="utf-8")


def _without_storage_ranges(text: str) -> str:
    """Integer bounds come from the database's column sizes (SQLite 64-bit, PostgreSQL 32-bit for
    an ``integer`` column), so the contract is compared with those bounds folded to one token."""
    import re

    bounds = r"-?(32767|32768|2147483647|2147483648|9223372036854775807|9223372036854775808)"
    text = re.sub(rf"(maximum|minimum): {bounds}\n", r"\1: <db-int>\n", text)
    return re.sub(r"\n\s*format: int64(?=\n)", "", text)


def test_schema_is_valid_and_matches_the_committed_snapshot(generated):
    committed = SNAPSHOT.read_text(encoding="utf-8")
    assert _without_storage_ranges(generated) == _without_storage_ranges(committed), (
        "The API changed but tower/openapi.yaml did not. Review the change, then regenerate the "
        f"snapshot with:  {REGENERATE}  and commit it with the code."
    )


def test_snapshot_lists_the_v1_endpoints(generated):
    paths = set(yaml.safe_load(generated)["paths"])
    for expected in [
        "/api/v1/projects/{id}/style/",
        "/api/v1/projects/{id}/members/{user_id}/",
        "/api/v1/characters/{id}/references/",
        "/api/v1/references/{id}/",
        "/api/v1/versions/",
        "/api/v1/variations/{id}/",
        "/api/v1/jobs/",
        "/api/v1/assets/{id}/",
        "/api/v1/tokens/{id}/",
    ]:
        assert expected in paths


def test_schema_needs_a_signed_in_user(api_anonymous, api_owner):
    assert api_anonymous.get("/api/schema/").status_code == 401
    response = api_owner.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
    assert api_owner.get("/api/schema/").content.startswith(b"openapi: 3.")


def test_docs_page_uses_local_assets_only(client, owner):
    anonymous = client.get("/api/docs/")
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith(resolve_url(django_settings.LOGIN_URL))
    owner.refresh_from_db()  # the factory does not save the hashed password; the session checks it
    client.force_login(owner)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert re.search(r"https?://", html) is None, "the docs page must not load anything from a CDN"
    # Its start-up script is a file (no inline script, for the Content-Security-Policy).
    assert '<script src="/api/docs/?script=">' in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "/api/schema/" in script.content.decode()


# --- responses are what the schema says ----------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return yaml.safe_load(SNAPSHOT.read_text(encoding="utf-8"))


def _declared_keys(schema: dict, path: str, method: str, status: str) -> tuple[set[str], dict]:
    content = schema["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    component = schema["components"]["schemas"][content["$ref"].rsplit("/", 1)[-1]]
    return set(component["properties"]), component


def _item_keys(schema: dict, paginated: dict) -> set[str]:
    ref = paginated["properties"]["results"]["items"]["$ref"]
    return set(schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]["properties"])


@pytest.fixture
def world(project):
    character = character_create(project=project, name="Kai", design_prompt="1boy")
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes()))
    job = JobFactory(project=project, character=character)
    asset = AssetFactory(project=project, job=job)
    return {
        "project": project.pk,
        "character": character.pk,
        "reference": reference.pk,
        "job": job.pk,
        "asset": asset.pk,
    }


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/api/v1/projects/{id}/", "/api/v1/projects/{project}/"),
        ("/api/v1/projects/{id}/style/", "/api/v1/projects/{project}/style/"),
        ("/api/v1/characters/{id}/", "/api/v1/characters/{character}/"),
        ("/api/v1/references/{id}/", "/api/v1/references/{reference}/"),
        ("/api/v1/jobs/{id}/", "/api/v1/jobs/{job}/"),
        ("/api/v1/assets/{id}/", "/api/v1/assets/{asset}/"),
    ],
)
def test_detail_responses_have_exactly_the_declared_keys(schema, world, api_owner, path, url):
    declared, _ = _declared_keys(schema, path, "get", "200")
    response = api_owner.get(url.format(**world))
    assert response.status_code == 200
    assert set(response.json()) == declared


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/api/v1/projects/", "/api/v1/projects/"),
        ("/api/v1/characters/", "/api/v1/characters/"),
        ("/api/v1/characters/{id}/references/", "/api/v1/characters/{character}/references/"),
        ("/api/v1/projects/{id}/members/", "/api/v1/projects/{project}/members/"),
        ("/api/v1/jobs/", "/api/v1/jobs/"),
    ],
)
def test_list_responses_have_exactly_the_declared_keys(schema, world, api_owner, path, url):
    declared, paginated = _declared_keys(schema, path, "get", "200")
    body = api_owner.get(url.format(**world)).json()
    assert set(body) == declared
    assert body["results"]
    assert set(body["results"][0]) == _item_keys(schema, paginated)


def test_token_creation_response_has_exactly_the_declared_keys(schema, api_owner):
    declared, _ = _declared_keys(schema, "/api/v1/tokens/", "post", "201")
    body = api_owner.post("/api/v1/tokens/", {"name": "ci"}).json()
    assert set(body) == declared
    assert "key" in declared


def test_upload_response_has_exactly_the_declared_keys(schema, world, api_owner):
    declared, _ = _declared_keys(schema, "/api/v1/characters/{id}/references/", "post", "201")
    url = f"/api/v1/characters/{world['character']}/references/"
    data = {"image": io.BytesIO(png_bytes(colour=(3, 3, 3)))}
    data["image"].name = "new.png"
    body = api_owner.post(url, data, format="multipart").json()
    assert set(body) == declared


# --- the schema tells the truth (schemathesis findings, issue 17) ------------------------------


def test_every_operation_documents_its_error_answers(generated):
    schema = yaml.safe_load(generated)
    assert schema["components"]["schemas"]["Error"]["properties"]["detail"] == {"type": "string"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "403", "404", "429"} <= codes, (method, path, codes)


def test_job_quality_is_documented_as_the_one_object_it_answers(generated, api_owner, project):
    schema = yaml.safe_load(generated)
    ok = schema["paths"]["/api/v1/jobs/{job_pk}/quality/"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobQuality"}
    job = JobFactory(project=project)
    assert api_owner.get(f"/api/v1/jobs/{job.pk}/quality").json()["job"] == job.pk


def test_a_template_graph_is_documented_as_an_object_or_text_never_null(generated, api_owner, project):
    graph = yaml.safe_load(generated)["components"]["schemas"]["TemplateImportRequest"]["properties"]["graph"]
    assert graph["oneOf"] == [{"type": "object", "additionalProperties": True}, {"type": "string"}]
    assert "nullable" not in graph
    response = api_owner.post("/api/v1/templates", {"project": project.pk, "name": "x", "graph": None}, format="json")
    assert response.status_code == 400 and "graph" in response.json()
