"""``manage.py generate`` and ``manage.py comfy_status`` against the fake ComfyUI on a real port."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from generation import tasks
from generation.management.commands import generate as generate_command
from generation.models import Asset, Backend, InputImage, Job, JobStatus
from tests.factories import AssetFactory, CharacterFactory, UserFactory, png_bytes
from tests.generation.engine_helpers import backend_for, run_in_thread, shipped
from tests.support.processes import free_port, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

SMALL = ["--set", "width=64", "--set", "height=64"]


class Workers:
    """Stands in for django-q: each enqueued job runs at once in its own thread, as a worker would."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def __call__(self, job_id: int) -> None:
        def work() -> None:
            try:
                tasks.job_run(job_id)
            finally:
                connection.close()

        thread = threading.Thread(target=work, daemon=True)
        self.threads.append(thread)
        thread.start()

    def join(self) -> None:
        while self.threads:  # a finishing job may dispatch the next one
            thread = self.threads.pop(0)
            thread.join(timeout=30)
            assert not thread.is_alive(), "a job did not finish"


@pytest.fixture
def workers(monkeypatch) -> Iterator[Workers]:
    pool = Workers()
    monkeypatch.setattr(tasks, "enqueue_run", pool)
    monkeypatch.setattr(tasks, "enqueue_abort", lambda job_id: None)
    yield pool
    pool.join()


@pytest.fixture
def templates() -> None:
    shipped("weightless-image")  # loads every shipped template


class TerminalBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(command: str, *args: str, stdout: io.StringIO | None = None) -> tuple[int, str]:
    """Run a command; its exit status and output."""
    out = stdout if stdout is not None else io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=io.StringIO())
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue()


def factory_file(name: str):
    from django.core.files.base import ContentFile

    return ContentFile(png_bytes(), name=name)


# --- generate --------------------------------------------------------------------------------------


def test_generate_waits_for_the_job_and_prints_where_the_image_is(fake, project, templates, workers):
    backend_for(fake)

    code, out = run(
        "generate", "--project", project.slug, "--template", "weightless-image", "--prompt", "silver hair",
        "--seed", "7", *SMALL,
    )  # fmt: skip

    workers.join()
    job = Job.objects.get()
    assert code == 0, out
    assert (job.status, job.seed, job.created_by) == (JobStatus.SUCCEEDED, 7, project.owner)
    assert f"Submitted 1 job to {project.slug} (weightless-image, draft) as owner: #{job.pk}" in out
    assert f"#{job.pk:<5} [{'#' * 24}] 100%  succeeded" in out  # the plain progress line
    assert f"#{job.pk} succeeded in" in out and "on gpu-1 (seed 7)" in out
    [asset] = Asset.objects.filter(job=job)
    assert f"      {asset.file.path}\n" in out
    assert Path(asset.file.path).is_file()
    assert "1 of 1 job succeeded." in out


def test_generate_on_a_terminal_redraws_one_bar_per_job_while_they_run(fake, project, templates, workers):
    backend_for(fake, max_in_flight=2)
    fake.configure(holds={"ImageAddNoise"})
    screen = TerminalBuffer()
    args = ["--project", str(project.pk), "--template", "weightless-image", "--count", "2", *SMALL]

    thread, result = run_in_thread(lambda: run("generate", *args, stdout=screen))
    wait_until(lambda: "running" in screen.getvalue(), what="a bar showing a running job")
    # Stop holding first: a prompt reaching the node between a release and the change was held forever.
    fake.configure(holds=set())
    fake.release()
    thread.join(timeout=30)

    [(code, out)] = result
    first, second = Job.objects.order_by("pk")
    assert code == 0, out
    assert "\x1b[2F" in out  # two lines, redrawn in place
    assert "█" in out and "░" in out
    assert f"#{first.pk:<5} [{'█' * 24}] 100%  succeeded" in out
    assert f"#{second.pk} succeeded" in out
    assert "2 of 2 jobs succeeded." in out


def test_a_failing_job_exits_1_naming_the_node_and_the_error(fake, project, templates, workers):
    backend_for(fake)
    fake.configure(failures={"ImageBlend": ("RuntimeError", "boom")})

    code, out = run("generate", "--project", project.slug, "--template", "weightless-image", *SMALL)

    job = Job.objects.get()
    assert code == 1
    assert job.status == JobStatus.FAILED
    assert f"#{job.pk} failed: RuntimeError at {job.error_node}: boom" in out
    assert "ImageBlend" in job.error_node
    assert "0 of 1 job succeeded." in out


def test_no_wait_submits_for_the_workers_and_returns(project, templates, enqueued):
    character = CharacterFactory(project=project, slug="kai")

    code, out = run(
        "generate", "--project", project.slug, "--template", "weightless-image", "--character", "kai",
        "--seed", "1", "--seed", "2", "--set", "steps=9", "--user", "member", "--no-wait", *SMALL,
    )  # fmt: skip

    jobs = list(Job.objects.order_by("pk"))
    assert code == 0
    assert [job.seed for job in jobs] == [1, 2]
    assert all(job.status == JobStatus.QUEUED for job in jobs)
    assert all(job.character == character and job.created_by.username == "member" for job in jobs)
    assert all(job.overrides["steps"] == 9 for job in jobs)  # "9" read as JSON: a number
    # No backend yet: one task goes, to record why the jobs wait; the rest wait for free slots.
    assert enqueued.take() == [jobs[0].pk]
    assert "Results" not in out


def test_ctrl_c_with_cancel_on_interrupt_cancels_the_jobs(project, templates, enqueued, monkeypatch):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_command, "_pause", interrupt)

    code, out = run(
        "generate", "--project", project.slug, "--template", "weightless-image", "--cancel-on-interrupt", *SMALL
    )

    job = Job.objects.get()
    assert code == 1
    assert job.status == JobStatus.CANCELLED
    assert "Cancelled 1 job(s)." in out
    assert f"#{job.pk} cancelled" in out


def test_ctrl_c_without_a_terminal_to_ask_leaves_the_jobs_running(project, templates, enqueued, monkeypatch):
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_command, "_pause", interrupt)

    code, out = run("generate", "--project", project.slug, "--template", "weightless-image", *SMALL)

    assert code == 1
    assert Job.objects.get().status == JobStatus.QUEUED
    assert "Left running" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--project", "nope"], "no project 'nope' (give its id or slug)"),
        (["--template", "nope"], "no workflow template 'nope' for project 'skyline-academy'; available: "),
        (["--user", "viewer"], "user 'viewer' has read-only access to project 'skyline-academy'"),
        (["--user", "outsider"], "user 'outsider' has no access to project 'skyline-academy'"),
        (["--user", "ghost"], "no user 'ghost'"),
        (["--character", "nobody"], "no character 'nobody' in project 'skyline-academy'"),
        (["--version", "v2"], "--version by slug needs --character"),
        (["--set", "steps"], "--set 'steps': expected KEY=VALUE"),
        (["--set", "steps=0"], "the jobs cannot be created: override steps must be at least 1, not 0"),
        (["--count", "0"], "the jobs cannot be created: count must be between 1 and 64"),
    ],
)
def test_a_bad_request_is_refused_clearly_and_creates_nothing(project, templates, enqueued, args, message):
    UserFactory(username="outsider")
    defaults = {"--project": project.slug, "--template": "weightless-image"}
    options = dict(defaults)
    options.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [item for pair in options.items() for item in pair]

    with pytest.raises(CommandError) as error:
        call_command("generate", *argv, stdout=io.StringIO())

    assert message in str(error.value)
    assert not Job.objects.exists()
    assert enqueued.take() == []


# --- image inputs ----------------------------------------------------------------------------------


def _kai_with_references(project):
    from characters.services import character_add_reference

    kai = CharacterFactory(project=project, slug="kai")
    primary = character_add_reference(character=kai, upload=io.BytesIO(png_bytes(40, 40, (250, 0, 0))))
    other = character_add_reference(character=kai, upload=io.BytesIO(png_bytes(40, 40, (0, 250, 0))))
    return kai, primary, other


def test_generate_reference_without_an_id_sends_the_character_primary_reference(fake, project, templates, workers):
    backend_for(fake)
    kai, primary, _ = _kai_with_references(project)

    code, out = run(
        "generate", "--project", project.slug, "--template", "weightless-img2img", "--character", "kai",
        "--reference", *SMALL,
    )  # fmt: skip

    workers.join()
    job = Job.objects.get()
    assert code == 0, out
    name = f"tower-{primary.sha256[:24]}.png"
    # weightless-img2img binds no reference_image: the reference goes to its first image input.
    assert job.params["init_image"] == name
    assert fake.history[job.prompt_id]["prompt"][2]["1"]["inputs"]["image"] == name
    assert (fake.input_dir / name).read_bytes() == primary.image.open("rb").read()
    assert job.character == kai


def test_generate_reference_by_id_and_init_asset(project, templates, enqueued):
    _, _, other = _kai_with_references(project)
    asset = AssetFactory(project=project, sha256="c" * 64, file=factory_file("out.png"))

    code, _ = run(
        "generate", "--project", project.slug, "--template", "weightless-img2img", "--reference", str(other.pk),
        "--no-wait", *SMALL,
    )  # fmt: skip
    assert code == 0
    assert Job.objects.get().params["init_image"] == f"tower-{other.sha256[:24]}.png"

    code, _ = run(
        "generate", "--project", project.slug, "--template", "weightless-img2img", "--init-asset", str(asset.pk),
        "--no-wait", *SMALL,
    )  # fmt: skip
    assert code == 0
    assert Job.objects.latest("pk").params["init_image"] == f"tower-{'c' * 24}.png"


@pytest.mark.parametrize("named", [False, True])
def test_generate_image_stores_the_file_as_an_input_image_and_uses_it(project, templates, enqueued, tmp_path, named):
    data = png_bytes(30, 20, (1, 2, 250))
    path = tmp_path / "start here.png"
    path.write_bytes(data)

    value = f"init_image={path}" if named else str(path)
    code, out = run(
        "generate", "--project", project.slug, "--template", "weightless-img2img", "--image", value, "--no-wait",
        *SMALL,
    )  # fmt: skip

    assert code == 0, out
    stored = InputImage.objects.get()
    assert (stored.project, stored.original_name, stored.created_by) == (project, "start here.png", project.owner)
    assert stored.file.read() == data
    assert Job.objects.get().params["init_image"] == f"tower-{stored.sha256[:24]}.png"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--image", "/no/such/file.png"], "--image /no/such/file.png: no such file"),
        (["--image", "{text}"], "not a readable image"),
        (["--image", "first_frame=x.png"], "no image input 'first_frame'; the image inputs are init_image"),
        (["--init-asset", "999999"], "--init-asset 999999: no output #999999 in project 'skyline-academy'"),
        (["--reference", "999999"], "--reference 999999: no reference image #999999 in project 'skyline-academy'"),
        (["--reference"], "--reference without an id takes the character's primary reference: give --character"),
        (["--template", "weightless-image", "--reference", "1"], "template 'weightless-image' takes no image input"),
        ([], "needs an image for 'init_image' (LoadImage #1)"),
    ],
)
def test_bad_image_flags_are_refused_clearly_and_create_nothing(project, templates, enqueued, tmp_path, args, message):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    argv = ["--project", project.slug, "--template", "weightless-img2img", "--no-wait"]
    argv += [arg.format(text=text) for arg in args]

    with pytest.raises(CommandError) as error:
        call_command("generate", *argv, stdout=io.StringIO())

    assert message in str(error.value)
    assert not Job.objects.exists()
    assert not InputImage.objects.exists()


def test_phase_two_work_behind_a_closed_gate_is_refused_unless_forced_with_a_reason(project, templates, enqueued):
    kai, _, _ = _kai_with_references(project)
    argv = ["--project", project.slug, "--template", "weightless-loop", "--character", "kai", "--no-wait", *SMALL]

    with pytest.raises(CommandError) as error:
        call_command("generate", *argv, stdout=io.StringIO())
    assert "phase 1 gate is closed" in str(error.value) and "force it with a reason" in str(error.value)
    assert not Job.objects.exists()

    code, out = run("generate", *argv, "--force", "client review needs a loop today")

    assert code == 0, out
    job = Job.objects.get()
    assert (job.character, job.phase, job.forced_reason) == (kai, 2, "client review needs a loop today")


def test_a_missing_default_template_says_how_to_load_them(project, enqueued):
    with pytest.raises(CommandError, match=r"none are loaded\. Run `manage\.py sync_workflows`"):
        call_command("generate", "--project", project.slug, stdout=io.StringIO())


# --- comfy_status ---------------------------------------------------------------------------------


@pytest.fixture
def two_backends(fake, project) -> tuple[Backend, Backend]:
    fake.configure(vram_total=24 * 1024**3, vram_free=18 * 1024**3)
    up = backend_for(f"http://tower:s3cret-up@127.0.0.1:{fake.port}", last_checkpoint="anime_v1.safetensors")
    down = Backend.objects.create(name="gpu-2", url=f"http://tower:s3cret-down@127.0.0.1:{free_port()}")
    Job.objects.create(project=project, backend=up, status=JobStatus.RUNNING)
    return up, down


def test_comfy_status_shows_every_backend_and_exits_1_when_one_is_down(two_backends, fake):
    code, out = run("comfy_status", "--timeout", "2")

    header, first, second, *_ = out.splitlines()
    assert code == 1
    assert header.split()[:4] == ["BACKEND", "URL", "ENABLED", "REACHABLE"]
    assert first.split()[:5] == ["gpu-1", f"http://127.0.0.1:{fake.port}", "yes", "yes", "0.3.64"]
    assert "6.0/24.0 GiB" in first
    assert "0/0" in first and " 1 " in first  # live queue, and Tower's one job in flight
    assert "anime_v1.safetensors" in first
    assert second.split()[:4] == ["gpu-2", f"http://127.0.0.1:{two_backends[1].url.rsplit(':', 1)[1]}", "yes", "NO"]
    assert "unreachable" in second
    assert "Unreachable: gpu-2" in out
    assert "s3cret" not in out and "tower:" not in out


def test_comfy_status_json_parses_and_hides_credentials(two_backends):
    code, out = run("comfy_status", "--json", "--timeout", "2")

    data = json.loads(out)
    up, down = data["backends"]
    assert code == 1
    assert data["ok"] is False
    assert (up["name"], up["reachable"], up["tower_jobs_in_flight"]) == ("gpu-1", True, 1)
    assert up["queue"] == {"running": 0, "pending": 0}
    assert up["devices"][0]["vram_total"] == 24 * 1024**3
    assert up["devices"][0]["vram_used"] == 6 * 1024**3
    assert (down["name"], down["reachable"], down["queue"]["running"]) == ("gpu-2", False, None)
    assert down["error"]
    assert "s3cret" not in out


def test_comfy_status_refresh_updates_stored_health(two_backends):
    up, down = two_backends
    Backend.objects.filter(pk=up.pk).update(healthy=False, node_classes=[])

    code, out = run("comfy_status", "--refresh", "--json", "--timeout", "2")

    data = json.loads(out)
    up.refresh_from_db()
    down.refresh_from_db()
    assert code == 1
    assert up.healthy and up.node_classes and up.object_info.data
    assert not down.healthy and down.last_error
    assert [row["refreshed"] for row in data["backends"]] == [True, False]
    assert data["backends"][1]["last_error"] and "s3cret" not in out


def test_comfy_status_exits_0_when_only_a_disabled_backend_is_down(fake):
    backend_for(fake)
    Backend.objects.create(name="gpu-off", url=f"http://127.0.0.1:{free_port()}", enabled=False)

    code, out = run("comfy_status", "--timeout", "2")

    assert code == 0, out
    assert "gpu-off" in out
    assert "Every enabled backend is reachable." in out


def test_comfy_status_without_backends_says_how_to_add_one():
    code, out = run("comfy_status")

    assert code == 1
    assert "No ComfyUI backends registered" in out
