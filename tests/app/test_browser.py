"""The whole flow in a real browser: Playwright for Python driving Debian's Chromium.

Generate 20 drafts with Auto-LoRA in Explore mode, click three and see them marked, Reject all on a
second batch, Refine the first, and watch the Stats tab's numbers move. Screenshots of every step
go to test-artifacts/browser/. A missing Chromium fails every test here with a message saying how to
install it, never a skip: `make test` installs it first (its `chromium` target).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from draftgrid.launch import RunningApp
from tests.app.conftest import start_app

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

pytestmark = pytest.mark.browser


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def thumbs(page: Page):  # noqa: ANN201 - a Playwright Locator
    return page.locator("#dg-grid button.thumbnail-item")


def current_batch(page: Page) -> str | None:
    count = page.locator("#dg-count")
    return count.get_attribute("data-batch") if count.count() else None


def wait_for_new_batch(page: Page, previous: str | None, count: int) -> None:
    """Wait until the status shows a batch other than `previous`, finished, with `count` thumbnails."""
    page.wait_for_function(
        "([prev, n]) => { const c = document.querySelector('#dg-count');"
        " return c && c.dataset.batch !== prev && c.textContent.includes(`${n} / ${n} images · done`); }",
        arg=[previous or "", count], timeout=60_000)
    expect(thumbs(page)).to_have_count(count, timeout=30_000)


def generate(page: Page, prompt: str, count: int = 20) -> None:
    previous = current_batch(page)
    page.locator("#dg-prompt textarea").fill(prompt)
    number = page.locator("#dg-count-slider input[type=number]")
    number.fill(str(count))
    number.press("Tab")
    page.locator("#dg-generate").click()
    wait_for_new_batch(page, previous, count)


def selected_count(page: Page) -> int:
    text = page.locator("#dg-selected").inner_text()
    return int(re.match(r"(\d+)", text).group(1))  # type: ignore[union-attr]


@pytest.fixture
def empty_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """An app of its own: the flow below counts from an empty store, whatever ran before."""
    running = start_app(tmp_path_factory.mktemp("empty"), sim_speed=500.0, sim_previews=True)
    yield running
    running.close()


def test_generate_select_reject_refine_stats(empty_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(empty_app.local_url)
    expect(page.locator("#dg-sim-banner")).to_contain_text("Simulated GPUs")
    shot(page, "01-opened")

    # stats before anything happened
    page.get_by_role("tab", name="Stats").click()
    expect(page.locator("#dg-stats-summary")).to_contain_text("0 selected of 0 reviewed images")
    page.get_by_role("tab", name="Generate").click()

    page.locator("#dg-auto-lora input[type=checkbox]").check()
    page.locator("#dg-mode").get_by_label("Explore").check()
    page.locator("#dg-prompt textarea").fill("anime girl with long hair, cherry blossoms")
    shot(page, "02-prompt")
    page.locator("#dg-generate").click()
    wait_for_new_batch(page, None, 20)
    first_batch = current_batch(page)
    expect(page.locator("#dg-strategy")).to_contain_text("checkpoint")
    captions = page.locator("#dg-grid .caption-label")
    expect(captions.first).to_contain_text("seed")
    shot(page, "03-twenty-drafts")

    for index in (0, 4, 7):
        thumbs(page).nth(index).click()
    expect(page.locator("#dg-selected")).to_contain_text("3 selected", timeout=15_000)
    expect(page.locator("#dg-grid .caption-label", has_text="✓ selected")).to_have_count(3, timeout=15_000)
    shot(page, "04-three-selected")

    generate(page, "a watercolor lighthouse at dusk", count=20)
    page.locator("#dg-reject-all").click()
    expect(page.locator("#dg-grid .caption-label", has_text="✗ rejected")).to_have_count(20, timeout=15_000)
    shot(page, "05-second-batch-rejected")

    # back to the first batch through the batch picker, then refine its three favourites
    page.locator("#dg-batch-picker input").click()
    page.get_by_role("option", name=re.compile("anime girl")).click()
    expect(page.locator("#dg-grid .caption-label", has_text="✓ selected")).to_have_count(3, timeout=15_000)
    assert current_batch(page) == first_batch
    page.locator("#dg-refine").click()
    wait_for_new_batch(page, first_batch, 3)
    expect(page.locator("#dg-strategy")).to_contain_text("Refining 3 image(s) at the sd15 standard tier")
    shot(page, "06-refined")

    page.get_by_role("tab", name="Stats").click()
    expect(page.locator("#dg-stats-summary")).to_contain_text("3 selected of 40 reviewed images", timeout=15_000)
    shot(page, "07-stats")

    page.get_by_role("tab", name="GPUs").click()
    expect(page.locator("#dg-gpu-table")).to_contain_text("online", timeout=15_000)
    shot(page, "08-gpus")
    page.close()


def test_stop_cancels_a_running_batch(tmp_path_factory: pytest.TempPathFactory, browser) -> None:  # noqa: ANN001
    slow = start_app(tmp_path_factory.mktemp("slow"), sim_speed=2.0)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(slow.local_url)
        page.locator("#dg-prompt textarea").fill("a slow lighthouse")
        page.locator("#dg-generate").click()
        expect(page.locator("#dg-count")).to_contain_text("running", timeout=30_000)
        page.locator("#dg-stop").click()
        expect(page.locator("#dg-status")).to_contain_text("cancelled before it finished", timeout=30_000)
        shot(page, "10-stopped")
        page.close()
    finally:
        slow.close()


def test_phone_width_shows_the_grid_and_selection(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(ui_app.local_url)
    generate(page, "a photorealistic portrait of an old fisherman", count=6)
    thumbs(page).nth(1).click()
    expect(page.locator("#dg-selected")).to_contain_text("1 selected", timeout=15_000)
    box = thumbs(page).first.bounding_box()
    assert box is not None and box["width"] >= 120  # two columns on a phone, not ten specks
    shot(page, "09-phone")
    page.close()


def test_stats_tab_resets_undoes_and_queries(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(ui_app.local_url)
    generate(page, "a lighthouse in a storm", count=4)
    thumbs(page).nth(0).click()
    expect(page.locator("#dg-selected")).to_contain_text("1 selected", timeout=15_000)
    page.get_by_role("tab", name="Stats").click()
    summary = page.locator("#dg-stats-summary")
    expect(summary).not_to_contain_text("0 selected of 0", timeout=15_000)
    before = summary.inner_text()

    page.get_by_text("Reset what was learnt").click()
    page.locator("#dg-reset").click()  # "Everything" is the default choice
    expect(page.locator("#dg-reset-status")).to_contain_text("Reset every keyword", timeout=15_000)
    expect(summary).to_contain_text("0 selected of 0 reviewed images", timeout=15_000)
    shot(page, "11-reset")
    page.locator("#dg-undo-reset").click()
    expect(page.locator("#dg-reset-status")).to_contain_text("Undone", timeout=15_000)
    expect(summary).to_have_text(before, timeout=15_000)
    expect(page.locator("#dg-undo-reset")).to_be_hidden()

    page.get_by_text("Monitoring: read-only SQL and snapshot").click()
    page.locator("#dg-run-query").click()  # the example: seed 003's query per session
    expect(page.locator("#dg-query-status")).to_contain_text("own rows", timeout=15_000)
    expect(page.locator("#dg-query-table")).to_contain_text("avg_confidence")
    page.locator("#dg-snapshot").click()
    expect(page.locator("#dg-snapshot-file a[href$='draftgrid-snapshot.zip']")).to_have_count(1, timeout=15_000)
    shot(page, "12-monitoring")
    page.close()


def test_phone_width_auto_lora_label_is_not_clipped(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    page.goto(ui_app.local_url)
    label = page.locator("#dg-auto-lora").get_by_text("Auto-LoRA")
    # the app's first render: as long as Playwright's actions wait for an element (30 s), not an
    # assertion's 5 s (on a busy machine the page said "Loading..." for longer than that)
    expect(label).to_be_visible(timeout=30_000)
    clipped = label.evaluate("el => el.scrollWidth > el.clientWidth + 1")
    box, parent = label.bounding_box(), page.locator("#dg-auto-lora").bounding_box()
    assert box is not None and parent is not None
    assert not clipped and box["x"] + box["width"] <= parent["x"] + parent["width"] + 1
    shot(page, "12-phone-auto-lora")
    page.close()


def test_hurried_clicks_reach_the_server_one_at_a_time_and_the_shown_selection_is_the_stored_one(
        ui_app: RunningApp, browser, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """Five clicks 40 ms apart while each takes the server 150 ms: as concurrent gallery events their
    answers could arrive out of order and leave a stale "N selected" shown (a CI run saw 2 of 3).
    They now queue in the page like keys: never two in flight, and what is shown is what is stored."""
    import threading
    import time

    import httpx

    service = ui_app.backend.service
    real_toggle, lock, running, most = service.toggle, threading.Lock(), [0], [0]

    def slow_toggle(user: str, batch_id: str, index: int):  # noqa: ANN202
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.15)
            return real_toggle(user, batch_id, index)
        finally:
            with lock:
                running[0] -= 1

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(ui_app.local_url)
    generate(page, "a harbour at dawn, oil painting", count=8)
    batch_id = current_batch(page)
    monkeypatch.setattr(service, "toggle", slow_toggle)
    for index in (0, 3, 5, 6, 3):  # the second click on 3 unselects it: three stay selected
        thumbs(page).nth(index).click()
        page.wait_for_timeout(40)
    expect(page.locator("#dg-selected")).to_contain_text("3 selected", timeout=15_000)
    with httpx.Client(base_url=ui_app.local_url.rstrip("/"), timeout=30) as client:
        stored = client.get(f"/api/batches/{batch_id}").json()
    assert sum(1 for image in stored["images"] if image["selected"]) == 3 == selected_count(page)
    assert most[0] == 1  # one click at a time reached the server
    shot(page, "hurried-clicks")
