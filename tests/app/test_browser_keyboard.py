"""Issue 13's "must show": a whole triage session with the keyboard only, and the same by touch at
phone width, each step checked against `GET /api/batches/{id}` (nothing lost, nothing extra):
generate, move, select, reject, favourite, the viewer, compare two (and its slider), refine, stop.

The keys are typed at 100 ms intervals while the batch still streams (one simulated GPU at 4×
takes ~5 s for the 14 images still to come when typing starts, the typing ~1.5 s). Screenshots of every step go to test-artifacts/keyboard/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "keyboard"
HURRIED_MS = 100  # hurried typing: one key every 100 ms
THUMBS = "#dg-grid button.thumbnail-item"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """This module's app (conftest's `client` talks to it): slow enough that keys land while a batch
    streams and Stop finds it running."""
    running = start_app(tmp_path_factory.mktemp("keyboard"), sim_speed=4.0, sim_gpus=1)
    yield running
    running.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)


def shown_batch(page: Page) -> str:
    return page.locator("#dg-count").get_attribute("data-batch") or ""


def wait_new_batch(page: Page, previous: str) -> str:
    page.wait_for_function("prev => { const c = document.querySelector('#dg-count');"
                           " return c && c.dataset.batch && c.dataset.batch !== prev; }", arg=previous, timeout=30_000)
    return shown_batch(page)


def wait_finished(page: Page, count: int) -> None:
    expect(page.locator("#dg-count")).to_contain_text(f"{count} / {count} images · done", timeout=60_000)
    expect(page.locator(THUMBS)).to_have_count(count, timeout=15_000)


def gallery_ids(page: Page) -> list[str]:
    """The image ids in gallery order, read from the thumbnails' file names."""
    return page.eval_on_selector_all(
        THUMBS, "els => els.map(e => (/([0-9a-f]{32})\\./.exec(e.querySelector('img').src) || [])[1])")


def marks(client: httpx.Client, batch_id: str) -> dict[str, set[str]]:
    images = client.get(f"/api/batches/{batch_id}").json()["images"]
    return {field: {i["image_id"] for i in images if i[field]} for field in ("selected", "rejected", "favourite")}


def focused(page: Page) -> int:
    return int(page.locator("#dg-grid").get_attribute("data-focus-index") or -1)


def handle_x(handle) -> float:  # noqa: ANN001 - a Playwright Locator
    box = handle.bounding_box()
    assert box is not None
    return box["x"]


def viewer_image(page: Page) -> str:
    return page.locator("#dg-viewer-body .dg-view").get_attribute("data-image-id") or ""


def test_a_whole_session_with_the_keyboard_only(app: RunningApp, browser: Browser,
                                               client: httpx.Client) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(app.local_url)
    expect(page.locator("#dg-stop")).to_be_disabled()  # nothing runs yet
    prompt = page.locator("#dg-prompt textarea")
    for _ in range(40):  # Tab to the prompt
        if prompt.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    page.keyboard.type("a lighthouse on a cliff, stormy sea")
    page.keyboard.type("x?g")  # in a text box the keys are text, never commands
    expect(prompt).to_have_value("a lighthouse on a cliff, stormy seax?g")
    for _ in "x?g":
        page.keyboard.press("Backspace")
    page.keyboard.press("Control+Enter")
    first = wait_new_batch(page, "")
    expect(page.locator("#dg-stop")).to_be_enabled()
    page.wait_for_function(f"() => document.querySelectorAll('{THUMBS}').length >= 6", timeout=30_000)
    shot(page, "01-streaming")

    # while it streams, hurried: select 0, 2 and 4, reject 5, favourite 4
    page.keyboard.type(" ll ll lxhf", delay=HURRIED_MS)
    still_streaming = "running" in page.locator("#dg-count").inner_text()
    wait_finished(page, 20)
    ids = gallery_ids(page)
    expect(page.locator("#dg-selected")).to_contain_text("3 selected", timeout=15_000)
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4]}, "rejected": {ids[5]}, "favourite": {ids[4]}}
    assert focused(page) == 4, "the focus survived the streamed updates"
    assert still_streaming, "the keys were typed while the batch streamed"
    expect(page.locator("#dg-stop")).to_be_disabled(timeout=15_000)  # the batch is over
    shot(page, "02-three-selected-one-rejected-one-favourite")

    page.keyboard.press("j")  # down a row and back up
    columns = focused(page) - 4
    assert columns >= 2
    page.keyboard.press("k")
    assert focused(page) == 4

    page.keyboard.press("?")
    expect(page.locator("#dg-help")).to_be_visible()
    expect(page.locator("#dg-help")).to_contain_text("reject the focused image")
    shot(page, "03-shortcut-sheet")
    page.keyboard.press("Escape")
    expect(page.locator("#dg-help")).to_be_hidden()

    # the viewer: the focused image full size, with what made it; move, select in it
    page.keyboard.press("o")
    expect(page.locator("#dg-viewer")).to_be_visible()
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[4])
    body = page.locator("#dg-viewer-body")
    for fact in ("checkpoint", "seed", "batch index", "sampler", "scheduler", "steps", "CFG", "size", "draft",
                 "server", "time taken", "♥ favourite"):
        expect(body).to_contain_text(fact)
    expect(body.locator("img")).to_have_js_property("complete", True)
    shot(page, "04-viewer")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[5])
    expect(page.locator("#dg-viewer-mark")).to_contain_text("✗ rejected")
    page.keyboard.press("l")
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[6])
    page.keyboard.press(" ")
    expect(page.locator("#dg-viewer-mark")).to_contain_text("✓ selected")
    shot(page, "05-viewer-moved-and-selected")
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4], ids[6]}, "rejected": {ids[5]},
                                  "favourite": {ids[4]}}
    page.keyboard.press("Escape")
    expect(page.locator("#dg-viewer")).to_be_hidden()
    assert focused(page) == 6

    # refine the four
    page.keyboard.press("r")
    refined = wait_new_batch(page, first)
    wait_finished(page, 4)
    body_json = client.get(f"/api/batches/{refined}").json()
    assert body_json["tier"] == "standard" and body_json["parent_batch_id"] == first
    assert {i["parent_image_id"] for i in body_json["images"]} == {ids[0], ids[2], ids[4], ids[6]}
    assert focused(page) == 0  # a new batch starts at its first image
    shot(page, "06-refined")

    # select all, clear
    page.keyboard.press("a")
    expect(page.locator("#dg-selected")).to_contain_text("4 selected", timeout=15_000)
    assert marks(client, refined)["selected"] == {i["image_id"] for i in body_json["images"]}
    page.keyboard.press("Shift+A")
    expect(page.locator("#dg-selected")).to_contain_text("0 selected", timeout=15_000)
    assert marks(client, refined) == {"selected": set(), "rejected": set(), "favourite": set()}

    # compare two, hurried: select the first, move to the second, compare (the focused image with
    # the one selected), move to the left pane and back, pick it; the keys typed before the panes
    # arrived wait for them
    two = gallery_ids(page)[:2]
    page.keyboard.type(" lchl ", delay=HURRIED_MS)
    compare, panes = page.locator("#dg-compare"), page.locator("#dg-compare-body .dg-pane")
    expect(compare).to_be_visible()
    expect(panes).to_have_count(2, timeout=15_000)
    assert [panes.nth(k).get_attribute("data-image-id") for k in range(2)] == two
    expect(panes.nth(1)).to_have_attribute("data-state", "selected", timeout=15_000)
    expect(compare).to_have_attribute("data-pane-focus", "1")
    assert marks(client, refined) == {"selected": set(two), "rejected": set(), "favourite": set()}
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4], ids[6]}, "rejected": {ids[5]},
                                  "favourite": {ids[4]}}
    page.wait_for_function("() => [...document.querySelectorAll('#dg-compare-body .dg-pane img')]"
                           ".every(e => e.complete && e.naturalWidth > 0)", timeout=15_000)
    assert panes.locator("img").first.get_attribute("src") == f"/api/images/{two[0]}"  # full size
    shot(page, "07-compare-two-picked")

    # the slider: the left image over the right one, shown up to the handle
    page.keyboard.press("s")
    left, handle = compare.locator(".dg-slider-left"), compare.locator(".dg-slider-handle")
    expect(left).to_be_visible()
    expect(panes.first).to_be_hidden()
    expect(left).to_have_css("clip-path", "inset(0px 50% 0px 0px)")
    at_half = handle_x(handle)
    page.keyboard.type("]]")
    expect(left).to_have_css("clip-path", "inset(0px 30% 0px 0px)")
    stack = compare.locator(".dg-slider-stack").bounding_box()
    assert stack is not None and abs(handle_x(handle) - at_half - 0.2 * stack["width"]) < 3
    page.keyboard.press("[")
    expect(left).to_have_css("clip-path", "inset(0px 40% 0px 0px)")
    shot(page, "08-compare-slider")
    page.keyboard.press("s")  # side by side again
    expect(panes.first).to_be_visible()
    page.keyboard.press("Escape")  # back to the grid, the focus where it was
    expect(compare).to_be_hidden()
    assert focused(page) == 1

    # generate again with g, stop it with Esc
    page.keyboard.press("g")
    third = wait_new_batch(page, refined)
    expect(page.locator("#dg-stop")).to_be_enabled()
    page.keyboard.press("Escape")
    expect(page.locator("#dg-status")).to_contain_text("cancelled before it finished", timeout=30_000)
    assert client.get(f"/api/batches/{third}").json()["status"] in ("partial", "failed")
    expect(page.locator("#dg-stop")).to_be_disabled(timeout=15_000)
    shot(page, "09-stopped")
    # the first batch is as the keys left it
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4], ids[6]}, "rejected": {ids[5]},
                                  "favourite": {ids[4]}}
    page.close()


def swipe(page: Page, locator, dx: float) -> None:  # noqa: ANN001 - a Playwright Locator
    """A real touch swipe (touchstart, moves, touchend) across the middle of `locator`."""
    box = locator.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.synthesizeScrollGesture", {"x": x, "y": y, "xDistance": dx, "yDistance": 0,
                                                "gestureSourceType": "touch", "speed": 2000})
    cdp.detach()


def drag_by_touch(page: Page, locator, start: float, end: float) -> None:  # noqa: ANN001 - a Playwright Locator
    """A finger on `locator` at `start` of its width, dragged to `end` in small moves, then lifted."""
    box = locator.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    xs = [box["x"] + box["width"] * (start + (end - start) * k / 8) for k in range(9)]
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": xs[0], "y": y}]})
    for x in xs[1:]:
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def clip_right(locator) -> float:  # noqa: ANN001 - a Playwright Locator
    """How much of the slider's left image is clipped off on the right, in percent."""
    clip = locator.evaluate("e => getComputedStyle(e).clipPath")  # "inset(0px 30% 0px 0px)"
    return float(clip.split()[1].removesuffix("%"))


def test_a_whole_session_by_touch_at_phone_width(app: RunningApp, browser: Browser,
                                                client: httpx.Client) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    page.goto(app.local_url)
    page.locator("#dg-prompt textarea").tap()
    page.keyboard.type("a red fox in the snow")  # the phone's keyboard
    page.locator("#dg-generate").tap()
    first = wait_new_batch(page, "")
    page.wait_for_function(f"() => document.querySelectorAll('{THUMBS}').length >= 6", timeout=30_000)
    for index in (0, 2, 4):  # hurried taps while it streams
        page.locator(THUMBS).nth(index).tap()
    wait_finished(page, 20)
    ids = gallery_ids(page)
    expect(page.locator("#dg-selected")).to_contain_text("3 selected", timeout=15_000)
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4]}, "rejected": set(), "favourite": set()}
    assert focused(page) == 4
    shot(page, "11-phone-three-tapped")

    page.locator("#dg-open-viewer").tap()  # the last tapped image, full size
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[4])
    picture = page.locator("#dg-viewer-body img")
    expect(picture).to_have_js_property("complete", True)
    box = picture.bounding_box()
    assert box is not None and box["width"] >= 300  # full width of the phone, not a thumbnail
    shot(page, "12-phone-viewer")
    swipe(page, picture, -200)  # swipe left: the next image
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[5])
    page.locator("#dg-viewer [data-dg-cmd=reject]").tap()
    expect(page.locator("#dg-viewer-mark")).to_contain_text("✗ rejected")
    swipe(page, picture, -200)
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[6])
    picture.tap()  # a tap on the picture selects it
    expect(page.locator("#dg-viewer-mark")).to_contain_text("✓ selected")
    page.locator("#dg-viewer [data-dg-cmd=favourite]").tap()
    expect(page.locator("#dg-viewer-mark")).to_contain_text("♥ favourite")
    swipe(page, picture, 200)  # swipe right: back
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", ids[5])
    shot(page, "13-phone-viewer-swiped")
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4], ids[6]}, "rejected": {ids[5]},
                                  "favourite": {ids[6]}}
    page.locator("#dg-viewer [data-dg-cmd=escape]").tap()
    expect(page.locator("#dg-viewer")).to_be_hidden()

    page.locator("#dg-refine").tap()
    refined = wait_new_batch(page, first)
    wait_finished(page, 4)
    body = client.get(f"/api/batches/{refined}").json()
    assert {i["parent_image_id"] for i in body["images"]} == {ids[0], ids[2], ids[4], ids[6]}
    shot(page, "14-phone-refined")

    # compare two: tap the first, view it, swipe to the second, tap compare; swipe between the
    # panes, tap one to pick it, drag the slider
    two = gallery_ids(page)[:2]
    page.locator(THUMBS).nth(0).tap()
    expect(page.locator("#dg-selected")).to_contain_text("1 selected", timeout=15_000)
    page.locator("#dg-open-viewer").tap()
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", two[0])
    swipe(page, picture, -200)
    expect(page.locator("#dg-viewer-body .dg-view")).to_have_attribute("data-image-id", two[1])
    page.locator("#dg-viewer [data-dg-cmd=compare]").tap()
    compare, panes = page.locator("#dg-compare"), page.locator("#dg-compare-body .dg-pane")
    expect(page.locator("#dg-viewer")).to_be_hidden()
    expect(panes).to_have_count(2, timeout=15_000)
    assert [panes.nth(k).get_attribute("data-image-id") for k in range(2)] == two
    expect(compare).to_have_attribute("data-pane-focus", "1")
    swipe(page, panes.nth(1), 200)  # swipe right: the left pane
    expect(compare).to_have_attribute("data-pane-focus", "0")
    swipe(page, panes.nth(0), -200)
    expect(compare).to_have_attribute("data-pane-focus", "1")
    panes.nth(1).tap()
    expect(panes.nth(1)).to_have_attribute("data-state", "selected", timeout=15_000)
    assert marks(client, refined) == {"selected": set(two), "rejected": set(), "favourite": set()}
    shot(page, "15-phone-compare-picked")
    compare.locator("[data-dg-cmd=slider]").tap()
    left = compare.locator(".dg-slider-left")
    expect(left).to_have_css("clip-path", "inset(0px 50% 0px 0px)")
    drag_by_touch(page, compare.locator(".dg-split"), 0.5, 0.9)
    expect(left).not_to_have_css("clip-path", "inset(0px 50% 0px 0px)")
    assert clip_right(left) <= 20  # the left image shows up to ~90 %
    shot(page, "16-phone-compare-slider")
    compare.locator("[data-dg-cmd=escape]").tap()
    expect(compare).to_be_hidden()
    assert focused(page) == 1

    page.locator("#dg-generate").tap()
    third = wait_new_batch(page, refined)
    page.locator("#dg-stop").tap()
    expect(page.locator("#dg-status")).to_contain_text("cancelled before it finished", timeout=30_000)
    assert client.get(f"/api/batches/{third}").json()["status"] in ("partial", "failed")
    assert marks(client, first) == {"selected": {ids[0], ids[2], ids[4], ids[6]}, "rejected": {ids[5]},
                                  "favourite": {ids[6]}}
    shot(page, "17-phone-stopped")
    context.close()
