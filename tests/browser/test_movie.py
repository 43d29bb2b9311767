"""Movie production in real Chromium: a producer builds an episode's storyboard (adds scenes, drags one,
moves one back with the no-script buttons, deletes one after confirming), generates a scene on the
fake ComfyUI and watches its timeline fill live, assembles the episode and plays the film."""

from __future__ import annotations

import re

import pytest

from characters.services import character_create
from projects.services import style_update
from quality.models import PhaseGate, SceneRun
from tests.browser.conftest import screenshot
from tests.browser.test_studio import fake, log_in, off_the_loop, producer  # noqa: F401 (fixtures)
from tests.factories import make_project
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import textured_png
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

SEGMENT = "weightless-segment"


def titles(page) -> list[str]:
    return [t.split(". ", 1)[1] for t in page.locator("[data-scene-card] h3 a").all_text_contents()]


def add_scene(page, title: str, seconds: str) -> None:
    form = page.locator("form[data-scene-add]")
    form.locator("input[name=add-title]").fill(title)
    form.locator("input[name=add-duration_seconds]").fill(seconds)
    form.locator("input[name=add-characters]").first.check()
    form.locator("button:has-text('Add scene')").click()
    page.wait_for_selector(f"[data-scene-card] h3 a:has-text('{title}')")


def test_build_the_storyboard_generate_a_scene_and_play_the_film(page, producer, fake, stack, tmp_path):  # noqa: F811
    off_the_loop(shipped, SEGMENT)
    project = make_project(producer, name="Sky Pirates")
    style_update(project=project, width=96, height=96, fps=12)  # small frames: quick on two cores
    kai = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    # Video work waits for a character's phase 2; opened by hand as the chain's own tests do.
    PhaseGate.objects.create(
        project=project, character=kai, phase=2, is_open=True, overridden_by=producer, override_reason="browser test"
    )
    reference = tmp_path / "kai.png"
    reference.write_bytes(textured_png(3))

    log_in(page)
    # The reference goes through the page: the stack keeps its own media folder.
    page.goto(f"/characters/{kai.pk}/")
    page.set_input_files("form[action$='/references/'] input[type=file]", str(reference))
    page.click("button:has-text('Upload reference')")
    page.wait_for_selector("text=Reference added.")

    # The project page makes an episode and links its storyboard.
    page.goto(f"/projects/{project.pk}/")
    page.fill("#episodes input[name=title]", "Pilot")
    page.click("#episodes button:has-text('New episode')")
    page.wait_for_url(re.compile(r"/episodes/\d+/$"))
    episode_id = int(re.search(r"/episodes/(\d+)/", page.url)[1])
    page.wait_for_selector("#live-dot.on", timeout=10_000)
    assert page.locator("[data-no-scenes]").count() == 1

    add_scene(page, "Rooftop", "1")
    add_scene(page, "Hangar", "1")
    add_scene(page, "Storm", "2")
    assert titles(page) == ["Rooftop", "Hangar", "Storm"]

    # Drag Storm onto Rooftop: the new order is saved and the storyboard comes back from the server.
    # (Once the socket is up and its resync has re-read the storyboard: a drag is a person's act.)
    page.wait_for_selector("#live-dot.on", timeout=10_000)
    page.wait_for_load_state("networkidle")
    page.drag_and_drop("[data-scene-card]:has-text('Storm')", "[data-scene-card]:has-text('Rooftop')")
    page.wait_for_selector("[data-scene-card][data-scene-number='1']:has-text('Storm')")
    assert titles(page) == ["Storm", "Rooftop", "Hangar"]
    # The up/down buttons are plain forms (they work without scripts): Storm goes back down twice.
    for _ in range(2):
        page.locator("[data-scene-card]:has-text('Storm') button[data-move=down]").click()
        page.wait_for_load_state()
    assert titles(page) == ["Rooftop", "Hangar", "Storm"]
    screenshot(page, "movie-01-storyboard")

    # Delete asks first; the later scenes move up.
    for title in ("Hangar", "Storm"):
        page.locator(f"[data-scene-card]:has-text('{title}') a[data-delete]").click()
        page.wait_for_selector("text=Delete scene")
        page.click("button[data-confirm-delete]")
        page.wait_for_url(re.compile(rf"/episodes/{episode_id}/$"))
    assert titles(page) == ["Rooftop"]

    # Generate the scene in two segments and watch its timeline fill over the page socket.
    page.click("[data-scene-card] h3 a:has-text('Rooftop')")
    page.wait_for_url(re.compile(r"/scenes/\d+/$"))
    page.wait_for_selector("#live-dot.on", timeout=10_000)
    page.select_option("form[data-generate] select[name=template]", SEGMENT)
    page.fill("form[data-generate] input[name=segments]", "2")
    page.fill("form[data-generate] textarea[name=motion_prompt]", "walks to the railing")
    page.click("button[data-action=generate]")
    page.wait_for_selector("[data-timeline][data-scene-status=running]")
    page.wait_for_selector("[data-timeline][data-scene-status=complete]", timeout=120_000)
    run = SceneRun.objects.get()
    assert run.status == "complete", run.reasons
    frames = page.locator("[data-segment] img[data-first-frame], [data-segment] img[data-last-frame]")
    assert frames.count() == 4
    loaded = "img => img.complete && img.naturalWidth > 0"
    for index in range(4):  # every frame image loaded (served to the producer), none broken
        wait_until(lambda i=index: frames.nth(i).evaluate(loaded), timeout=10, what=f"frame image {index + 1}")
    assert page.locator('[data-join="2"]').count() == 1
    screenshot(page, "movie-02-timeline")

    # Assemble the episode and play its film.
    page.click(f"a[href='/episodes/{episode_id}/']")
    page.wait_for_selector("[data-scene-card] img[data-thumb]")
    page.wait_for_selector("#live-dot.on", timeout=10_000)
    page.click("button[data-action=assemble]")
    page.wait_for_selector("video[data-film-video], [data-error], [data-assembly-status=failed]", timeout=120_000)
    assert page.locator("[data-error], [data-assembly-status=failed]").all_text_contents() == []
    video = page.locator("video[data-film-video]")
    wait_until(lambda: video.evaluate("v => v.readyState") >= 2, timeout=30, what="the film's first frames")
    assert video.evaluate("v => v.duration") > 1.0  # two segments of 12 fps, less the repeated frame
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_until(lambda: video.evaluate("v => v.currentTime") > 0.2, timeout=30, what="the film playing")
    assert page.locator("[data-chapters] li").count() == 1
    screenshot(page, "movie-03-film")
    assert page.console_errors == []


def test_a_move_and_a_reconnect_re_read_answering_in_either_order_keep_the_new_order(page, producer):  # noqa: F811
    from projects.services import episode_create, scene_create

    project = make_project(producer, name="Sky Pirates")
    episode = episode_create(project=project, title="Pilot")
    for title in ("Rooftop", "Hangar", "Storm"):
        scene_create(episode=episode, title=title, duration_seconds=1.0)
    log_in(page)
    page.goto(f"/episodes/{episode.pk}/")
    page.wait_for_selector("#live-dot.on", timeout=10_000)
    page.wait_for_load_state("networkidle")
    # The storyboard's re-read (GET) and the move (POST) reach the server at once; their answers are
    # held and released in the order each round asks for, as a slow network would.
    held: dict[str, tuple] = {}

    def hold(route) -> None:
        if route.request.headers.get("hx-request"):
            held[route.request.method] = (route, route.fetch())
        else:
            route.continue_()

    urls = re.compile(rf"/episodes/{episode.pk}/(reorder/)?$")
    page.route(urls, hold)
    page.evaluate("""() => {
        window.answered = [];
        document.body.addEventListener("htmx:afterRequest", e => {
            if (e.detail.target.matches("[data-storyboard], [data-storyboard-slot]")) {
                window.answered.push(e.detail.requestConfig.verb);
            }
        });
    }""")

    def round_(drag: str, onto: str, release: tuple[str, str]) -> None:
        held.clear()
        page.evaluate("""() => { window.answered = []; htmx.trigger(document.body, "tower:resync"); }""")
        wait_until(lambda: page.evaluate("1") and "GET" in held, timeout=10, what="the re-read reaching the server")
        page.drag_and_drop(f"[data-scene-card]:has-text('{drag}')", f"[data-scene-card]:has-text('{onto}')")
        wait_until(lambda: page.evaluate("1") and "POST" in held, timeout=10, what="the move reaching the server")
        for count, method in enumerate(release, 1):
            route, response = held[method]
            route.fulfill(response=response)
            wait_until(
                lambda c=count: page.evaluate("() => window.answered.length") >= c,
                timeout=10,
                what=f"{method} answered",
            )

    # The re-read (the old order) answers first, then the move: the move's answer still shows.
    round_("Storm", "Rooftop", ("GET", "POST"))
    assert titles(page) == ["Storm", "Rooftop", "Hangar"]
    # The move answers first, then the re-read read before it: the older storyboard is not swapped in.
    round_("Hangar", "Storm", ("POST", "GET"))
    assert titles(page) == ["Hangar", "Storm", "Rooftop"]
    # A socket fragment rendered before the move and delivered after it (out of band, by id): not swapped in.
    late = held["GET"][1].text().replace(" data-revision=", ' hx-swap-oob="true" data-revision=', 1)
    page.evaluate(
        "html => htmx.swap(document.querySelector('[data-storyboard-slot]'), html, {swapStyle: 'none'})", late
    )
    assert titles(page) == ["Hangar", "Storm", "Rooftop"]
    newer = late.replace('data-revision="', 'data-revision="9', 1)  # the same, read later: swapped in
    page.evaluate(
        "html => htmx.swap(document.querySelector('[data-storyboard-slot]'), html, {swapStyle: 'none'})", newer
    )
    assert titles(page) == ["Storm", "Rooftop", "Hangar"]
    page.unroute(urls)
    page.reload()
    assert titles(page) == ["Hangar", "Storm", "Rooftop"]  # what the database holds
    assert page.console_errors == []
