"""``manage.py sync_workflows``: shipped templates into the database, idempotently."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from generation.models import WorkflowTemplate
from generation.services.templates import template_sync_shipped

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
SHIPPED = sorted(p.stem for p in WORKFLOWS.glob("*.json"))


def _run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("sync_workflows", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_first_run_creates_every_shipped_template_and_the_second_changes_nothing():
    out, err = _run()
    assert err == ""
    assert f"{len(SHIPPED)} created, 0 updated, 0 unchanged, 0 invalid" in out
    rows = WorkflowTemplate.objects.filter(project__isnull=True, source=WorkflowTemplate.Source.SHIPPED)
    assert sorted(rows.values_list("slug", flat=True)) == SHIPPED
    stamps = dict(rows.values_list("slug", "updated_at"))

    out, _ = _run()
    assert f"0 created, 0 updated, {len(SHIPPED)} unchanged, 0 invalid" in out
    assert dict(rows.values_list("slug", "updated_at")) == stamps


@pytest.mark.django_db
def test_rows_carry_the_file_contents():
    _run()
    row = WorkflowTemplate.objects.get(slug="weightless-loop")
    doc = json.loads((WORKFLOWS / "weightless-loop.json").read_text())
    assert (row.name, row.kind, row.weightless) == (doc["name"], "loop", True)
    assert row.graph == doc["graph"]
    assert row.bindings == doc["bindings"]
    assert row.required_nodes == [
        "EmptyImage",
        "ImageBatch",
        "ImageBlend",
        "ImageFromBatch",
        "ImageScale",
        "LoadImage",
        "RepeatImageBatch",
        "SaveAnimatedWEBP",
    ]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for slug in ("weightless-image", "weightless-loop"):
        shutil.copy(WORKFLOWS / f"{slug}.json", tmp_path / f"{slug}.json")
    return tmp_path


@pytest.mark.django_db
def test_an_invalid_file_is_reported_and_changes_nothing(folder):
    _run("--folder", str(folder))
    before = {t.slug: (t.graph, t.updated_at) for t in WorkflowTemplate.objects.all()}
    broken = json.loads((folder / "weightless-loop.json").read_text())
    broken["graph"]["2"]["inputs"]["image"] = ["99", 0]  # link to a node that does not exist
    broken["name"] = "Renamed"
    (folder / "weightless-loop.json").write_text(json.dumps(broken))
    (folder / "notes.json").write_text("{not json")

    out, err = _run("--folder", str(folder))
    assert "invalid    weightless-loop.json: graph: node 2: input 'image' links to node 99" in err
    assert "invalid    notes.json: cannot read notes.json" in err
    assert "0 created, 0 updated, 1 unchanged, 2 invalid" in out
    assert {t.slug: (t.graph, t.updated_at) for t in WorkflowTemplate.objects.all()} == before
    assert WorkflowTemplate.objects.get(slug="weightless-loop").name != "Renamed"


@pytest.mark.django_db
def test_strict_mode_fails_on_an_invalid_file(folder):
    (folder / "bad.json").write_text(json.dumps({"name": "Bad"}))
    with pytest.raises(CommandError, match="1 workflow file"):
        _run("--folder", str(folder), "--strict")
    # The valid files were still synced.
    assert WorkflowTemplate.objects.count() == 2


@pytest.mark.django_db
def test_a_changed_file_updates_only_its_row(folder):
    template_sync_shipped(folder=folder)
    doc = json.loads((folder / "weightless-image.json").read_text())
    doc["description"] = "A new description"
    doc["graph"]["4"]["inputs"]["strength"] = 0.5
    (folder / "weightless-image.json").write_text(json.dumps(doc))

    report = template_sync_shipped(folder=folder)
    assert (report.created, report.updated, report.unchanged) == ([], ["weightless-image"], ["weightless-loop"])
    row = WorkflowTemplate.objects.get(slug="weightless-image")
    assert row.description == "A new description"
    assert row.graph["4"]["inputs"]["strength"] == 0.5


@pytest.mark.django_db
def test_a_removed_file_leaves_its_row_and_is_reported(folder):
    template_sync_shipped(folder=folder)
    (folder / "weightless-loop.json").unlink()
    out, _ = _run("--folder", str(folder))
    assert "orphaned   weightless-loop" in out
    assert WorkflowTemplate.objects.filter(slug="weightless-loop").exists()


@pytest.mark.django_db
def test_two_files_with_one_slug(folder):
    shutil.copy(folder / "weightless-loop.json", folder / "zz-copy.json")
    report = template_sync_shipped(folder=folder)
    assert report.invalid == [("zz-copy.json", "slug 'weightless-loop' is already used by weightless-loop.json")]


@pytest.mark.django_db
def test_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="no workflows folder at"):
        _run("--folder", str(tmp_path / "nope"))
