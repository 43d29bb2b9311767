"""The README's script example, run as written against a real studio (``manage.py serve``).

The studio runs in a subprocess on the embedded default with a fake ComfyUI on a real port; the
token comes from ``manage.py token create`` and the script is the README's own code block, with
only its server, key and project filled in. It must follow its batch to the last event.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.comfyui import FakeComfy
from tests.tower.test_serve import _INHERITED_OUT, ROOT, Serve, wait_until

HEADING = "### Scripts: a token and the event socket"
SETTINGS_LINE = re.compile(r'^SERVER, KEY, PROJECT = "127\.0\.0\.1:8000", "twr_…", 1 .*$', re.MULTILINE)


def readme_example() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(HEADING, 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, f"no Python block under {HEADING!r}"
    return code[1]


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Iterator[tuple[Serve, dict[str, str]]]:
    root = tmp_path_factory.mktemp("readme")
    with FakeComfy(root=root / "comfy") as fake:
        serve = Serve(root / "var").start(COMFYUI_URLS=fake.url)
        try:
            # Healthy is enough: a job submitted before the worker is up waits for it in the queue.
            # First start applies every migration: a minute or more on a busy two-core machine.
            wait_until(serve.health, timeout=240, what="a healthy studio")
            env = {name: value for name, value in os.environ.items() if not _INHERITED_OUT.match(name)}
            env["TOWER_VAR_DIR"] = str(root / "var")
            yield serve, env
        finally:
            serve.kill()


@pytest.mark.timeout(600)
def test_the_readme_example_follows_a_batch_to_its_end_with_only_a_token(studio):
    serve, env = studio
    created = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "token", "create", "admin", "--name", "readme"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    project = httpx.post(
        f"{serve.url}/api/v1/projects/",
        json={"name": "Readme example"},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert project.status_code == 201, project.text

    example = readme_example()
    assert SETTINGS_LINE.search(example), "the example's settings line changed; update this test"
    server = serve.url.removeprefix("http://")
    script = SETTINGS_LINE.sub(f"SERVER, KEY, PROJECT = {server!r}, {key!r}, {project.json()['id']}", example)
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(env["TOWER_VAR_DIR"]), timeout=240
    )
    assert ran.returncode == 0, f"{ran.stdout}\n{ran.stderr}\n{serve.output}"
    lines = ran.stdout.splitlines()
    assert lines[0].startswith("subscribed")
    assert sum(line.startswith("job_complete ") for line in lines) == 2, ran.stdout
    assert lines[-1].startswith("job_complete ")
