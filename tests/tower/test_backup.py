"""``manage.py backup DIR`` / ``manage.py restore DIR``: a round trip into a fresh Tower, a
backup taken while a worker stores outputs, and the refusals (a tampered, missing or foreign
file, another vendor's backup, a database that holds data without --force).

On the embedded default (SQLite) everywhere; on PostgreSQL (DATABASE_URL set) through pg_dump and
pg_restore, the fresh Tower being a new database made with createdb.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management import CommandError, call_command
from django.db import connection

from generation.models import Asset, Job, JobStatus
from generation.services.submit import jobs_create
from projects.models import Project
from tests.factories import AssetFactory, JobFactory, make_project, png_bytes
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped
from tests.support.processes import ROOT, database_url, running_qcluster, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

# What a fresh Tower tells about its data, as JSON (run by `manage.py shell -c`).
STATE = """
import json
from django.contrib.auth.models import User
from generation.models import Asset, Job
from projects.models import Project
print(json.dumps({
    "users": sorted(User.objects.values_list("username", flat=True)),
    "projects": sorted(Project.objects.values_list("pk", "name")),
    "jobs": sorted(Job.objects.values_list("pk", "project_id", "status", "seed")),
    "assets": sorted(Asset.objects.values_list("pk", "job_id", "file", "sha256")),
    "media_root": str(__import__("django.conf").conf.settings.MEDIA_ROOT),
}))
"""


def state_here() -> dict:
    from django.contrib.auth.models import User

    return json.loads(
        json.dumps(
            {
                "users": sorted(User.objects.values_list("username", flat=True)),
                "projects": sorted(Project.objects.values_list("pk", "name")),
                "jobs": sorted(Job.objects.values_list("pk", "project_id", "status", "seed")),
                "assets": sorted(Asset.objects.values_list("pk", "job_id", "file", "sha256")),
            }
        )
    )


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_FILE", "MEDIA_ROOT", "DATABASE_URL"}}
    env.update(SECRET_KEY=settings.SECRET_KEY, TOWER_VAR_DIR=str(tmp_path))
    return env


@pytest.fixture
def fresh_tower(tmp_path) -> Iterator[dict[str, str]]:
    """The environment of a new Tower: a new var dir, and on PostgreSQL a new, empty database."""
    env = base_env(tmp_path / "fresh-var")
    if connection.vendor == "sqlite":
        yield env
        return
    if shutil.which("createdb") is None:
        pytest.skip("PostgreSQL's client tools (createdb, pg_dump, pg_restore) are not installed")
    db = connection.settings_dict
    name = f"{db['NAME']}_restore_{uuid.uuid4().hex[:6]}"
    libpq = {**os.environ, "PGHOST": str(db["HOST"] or "127.0.0.1"), "PGPORT": str(db["PORT"] or 5432)}
    libpq.update({k: str(v) for k, v in {"PGUSER": db["USER"], "PGPASSWORD": db["PASSWORD"]}.items() if v})
    subprocess.run(["createdb", name], env=libpq, check=True)
    try:
        yield {**env, "DATABASE_URL": database_url({**db, "NAME": name})}
    finally:
        subprocess.run(["dropdb", "--if-exists", name], env=libpq, check=True)


def state_of(env: dict[str, str]) -> dict:
    result = manage("shell", "-c", STATE, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def backup(target: Path) -> str:
    out = StringIO()
    call_command("backup", str(target), stdout=out)
    return out.getvalue()


def studio(owner) -> list[Asset]:
    """Two projects with jobs and their output files."""
    assets = []
    for p in range(2):
        project = make_project(owner, name=f"Project {p}")
        for j in range(3):
            job = JobFactory(project=project, status=JobStatus.SUCCEEDED)
            data = png_bytes(colour=(p * 100, j * 60, 20))
            assets.append(
                AssetFactory(
                    project=project,
                    job=job,
                    file=ContentFile(data, name=f"out-{p}-{j}.png"),
                    sha256=hashlib.sha256(data).hexdigest(),
                )
            )
    return assets


def assert_files_match(state: dict, media_root: Path) -> None:
    """Every asset row's file is there, with the sha256 the row records."""
    assert state["assets"]
    for _pk, _job, name, sha256 in state["assets"]:
        path = media_root / name
        assert path.is_file(), f"{name} missing from {media_root}"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, name


def test_round_trip_into_a_fresh_tower_gives_the_same_projects_jobs_assets_and_files(owner, tmp_path, fresh_tower):
    studio(owner)
    target = tmp_path / "backup"

    out = backup(target)

    assert f"database ({connection.vendor})" in out
    assert "media: 6 files" in out
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["database"]["vendor"] == connection.vendor
    assert "generation.0001_initial" in manifest["database"]["migrations"]
    for rel, entry in manifest["files"].items():
        assert hashlib.sha256((target / rel).read_bytes()).hexdigest() == entry["sha256"]

    files = sorted(target.rglob("*"))
    restored = manage("restore", str(target), env=fresh_tower)
    assert restored.returncode == 0, restored.stderr
    assert sorted(target.rglob("*")) == files  # the backup is left as it was: it restores again
    assert "verified: 7 files match the manifest" in restored.stdout
    assert "media: 6 files restored" in restored.stdout

    state = state_of(fresh_tower)
    assert {k: v for k, v in state.items() if k != "media_root"} == state_here()
    assert_files_match(state, Path(state["media_root"]))


@pytest.mark.redis
def test_backup_while_a_worker_stores_outputs_is_consistent(owner, tmp_path, redis_url, fresh_tower):
    env = base_env(tmp_path / "worker-var")
    env.update(
        DATABASE_URL=database_url(connection.settings_dict),
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"backup-{uuid.uuid4().hex[:8]}",
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        TOWER_WORKERS="2",
    )
    with FakeComfy(root=tmp_path / "comfy", node_delay=0.02) as fake:
        backend_for(fake)
        project = make_project(owner)
        for start in (1, 65):  # two requests of 64 jobs, dispatched by the worker's start-up reconcile
            jobs_create(
                user=owner,
                project=project,
                template=shipped("weightless-image"),
                overrides={"width": 64, "height": 64},
                seeds=list(range(start, start + 64)),
            )
        with running_qcluster(env=env, log_path=tmp_path / "qcluster.log") as cluster:
            wait_until(
                lambda: Asset.objects.count() >= 10,
                timeout=120,
                interval=0.2,
                what=f"the worker to store outputs (log: {cluster.log_path})",
            )
            backup(tmp_path / "backup")
            stored_after = Asset.objects.count()

    restored = manage("restore", str(tmp_path / "backup"), env=fresh_tower)
    assert restored.returncode == 0, restored.stderr
    state = state_of(fresh_tower)
    # The worker kept storing outputs while the backup ran; the copy holds a consistent moment of it.
    assert 10 <= len(state["assets"]) <= stored_after < 128
    assert_files_match(state, Path(state["media_root"]))
    succeeded = {pk for pk, _project, status, _seed in state["jobs"] if status == JobStatus.SUCCEEDED}
    assert succeeded == {job for _pk, job, _file, _sha in state["assets"]}
    here = {tuple(a) for a in state_here()["assets"]}
    assert {tuple(a) for a in state["assets"]} <= here


def tamper_file(target: Path) -> str:
    path = next((target / "media").rglob("*.png"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return path.relative_to(target).as_posix()


def remove_file(target: Path) -> str:
    path = next((target / "media").rglob("*.png"))
    path.unlink()
    return path.relative_to(target).as_posix()


def add_file(target: Path) -> str:
    (target / "media" / "assets" / "extra.png").write_bytes(b"not from the backup")
    return "media/assets/extra.png"


def other_vendor(target: Path) -> str:
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["database"]["vendor"] = "postgresql" if connection.vendor == "sqlite" else "sqlite"
    (target / "manifest.json").write_text(json.dumps(manifest))
    return f"holds a {manifest['database']['vendor']} database"


def no_manifest(target: Path) -> str:
    (target / "manifest.json").unlink()
    return "has no manifest.json"


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (tamper_file, "sha256 differs from the manifest"),
        (remove_file, "missing"),
        (add_file, "not in the manifest"),
        (other_vendor, ""),
        (no_manifest, ""),
    ],
)
def test_restore_refuses_a_damaged_backup_and_touches_nothing(owner, tmp_path, damage, expected):
    studio(owner)
    target = tmp_path / "backup"
    backup(target)
    named = damage(target)
    Project.objects.filter(name="Project 0").delete()  # after the backup: a refused restore keeps it gone
    before = state_here()
    files_before = sorted(p.relative_to(settings.MEDIA_ROOT) for p in Path(settings.MEDIA_ROOT).rglob("*"))

    with pytest.raises(CommandError) as refused:
        call_command("restore", str(target), "--force", stdout=StringIO())

    assert named in str(refused.value)
    assert expected in str(refused.value)
    assert state_here() == before
    assert sorted(p.relative_to(settings.MEDIA_ROOT) for p in Path(settings.MEDIA_ROOT).rglob("*")) == files_before


def test_restore_over_data_needs_force_then_replaces_the_database(owner, tmp_path):
    studio(owner)
    target = tmp_path / "backup"
    backup(target)
    backed_up = state_here()
    Project.objects.filter(name="Project 0").delete()
    make_project(owner, name="Made after the backup")

    with pytest.raises(CommandError, match=r"already holds .*--force"):
        call_command("restore", str(target), stdout=StringIO())
    assert Project.objects.filter(name="Made after the backup").exists()

    out = StringIO()
    call_command("restore", str(target), "--force", stdout=out)

    assert "--force: replacing a database that holds" in out.getvalue()
    assert state_here() == backed_up
    assert_files_match(backed_up, Path(settings.MEDIA_ROOT))


def test_backup_refuses_a_directory_that_is_not_empty(owner, tmp_path):
    target = tmp_path / "backup"
    target.mkdir()
    (target / "earlier.txt").write_text("x")
    with pytest.raises(CommandError, match="not an empty directory"):
        backup(target)


def test_backup_refuses_a_directory_inside_the_media_it_copies(owner):
    with pytest.raises(CommandError, match="inside MEDIA_ROOT"):
        backup(Path(settings.MEDIA_ROOT) / "backups" / "today")
