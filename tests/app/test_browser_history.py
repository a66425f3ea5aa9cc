"""History, Compare and Retry failed in a real browser (conftest's browser fixtures, test_browser.py's helpers):
a History search re-opens a batch and its prompt and settings fill the Generate tab; two images
compared side by side, one picked there is selected (GET /api/batches/{id}); the Retry failed button
makes a fault's failed images again."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page, expect

from draftgrid.launch import RunningApp
from tests.app.test_browser import current_batch, generate, shot, wait_for_new_batch

DREAMSHAPER = "dreamshaper_8.safetensors"


def batch_json(app: RunningApp, batch_id: str) -> dict:
    return httpx.get(f"{app.local_url.rstrip('/')}/api/batches/{batch_id}", timeout=30).json()


def loaded_images(page: Page, selector: str) -> list[str]:
    """The src of every image under `selector` that the browser has loaded."""
    return page.eval_on_selector_all(f"{selector} img", "els => els.filter(e => e.complete && e.naturalWidth > 0)"
                                                        ".map(e => e.getAttribute('src'))")


def test_history_reopens_a_batch_and_reuses_its_prompt(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(ui_app.local_url)
    page.locator("#dg-negative textarea").fill("blurry")
    generate(page, "a lighthouse in a storm", count=4)
    lighthouse = current_batch(page)
    page.locator("#dg-negative textarea").fill("")
    generate(page, "a castle on a hill", count=3)

    page.get_by_role("tab", name="History").click()
    page.locator("#dg-history-prompt textarea").fill("lighthouse in a storm")
    page.locator("#dg-history-search").click()
    expect(page.locator("#dg-history-total")).to_have_attribute("data-total", "4", timeout=15_000)
    grid = page.locator("#dg-history-grid button.thumbnail-item")
    expect(grid).to_have_count(4, timeout=15_000)
    page.wait_for_function("() => [...document.querySelectorAll('#dg-history-grid img')]"
                           ".filter(e => e.complete && e.naturalWidth > 0).length === 4", timeout=15_000)
    assert all("/api/images/" in src and src.endswith("/thumbnail") for src in loaded_images(page, "#dg-history-grid"))
    shot(page, "20-history")

    grid.first.click()  # re-opens its batch on the Generate tab
    expect(page.locator("#dg-prompt")).to_be_visible(timeout=15_000)
    page.wait_for_function("b => document.querySelector('#dg-count')?.dataset.batch === b", arg=lighthouse,
                           timeout=15_000)
    page.locator("#dg-prompt textarea").fill("")
    page.locator("#dg-reuse").click()
    expect(page.locator("#dg-prompt textarea")).to_have_value("a lighthouse in a storm", timeout=15_000)
    expect(page.locator("#dg-negative textarea")).to_have_value("blurry")
    shot(page, "21-history-reopened")
    page.close()


def test_compare_two_images_and_pick_one(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(ui_app.local_url)
    generate(page, "a red fox in the snow", count=6)
    batch_id = current_batch(page)
    assert batch_id

    page.get_by_role("tab", name="Compare").click()
    expect(page.locator("#dg-compare-note")).to_contain_text(f"Batch {batch_id[:6]}", timeout=15_000)
    boxes = page.locator("#dg-compare-chosen input[type=checkbox]")
    expect(boxes).to_have_count(6)
    boxes.nth(0).check()
    boxes.nth(3).check()
    page.locator("#dg-compare-show").click()
    board = page.locator("#dg-compare-board button.thumbnail-item")
    expect(board).to_have_count(2, timeout=15_000)
    page.wait_for_function("() => [...document.querySelectorAll('#dg-compare-board img')]"
                           ".filter(e => e.complete && e.naturalWidth > 0).length === 2", timeout=15_000)
    assert all("/api/images/" in src and not src.endswith("/thumbnail")  # full size
               for src in loaded_images(page, "#dg-compare-board"))
    shot(page, "22-compare-two")

    board.nth(1).click()
    picked = page.locator("#dg-compare-picked")
    expect(picked).to_be_visible(timeout=15_000)
    image_id = picked.get_attribute("data-image")
    images = batch_json(ui_app, batch_id)["images"]
    assert [i["image_id"] for i in images if i["selected"]] == [image_id]
    expect(page.locator("#dg-compare-board .caption-label", has_text="✓ selected")).to_have_count(1)
    shot(page, "23-compare-picked")

    # the same seed under every checkpoint of the Explore batch
    page.locator("#dg-compare-seed input").click()
    option = page.get_by_role("option").first
    label = option.inner_text()  # "seed 123#0 · 3 images"
    key, count = label.split()[1], int(label.split()[-2])
    option.click()
    expect(board).to_have_count(count, timeout=15_000)
    captions = page.locator("#dg-compare-board .caption-label")
    expect(captions.filter(has_text=f"seed {key}")).to_have_count(count)
    shown = {i["checkpoint"] for i in images if f"{i['seed']}#{i['batch_index']}" == key}
    assert count >= 2 and len(shown) >= 2  # the same noise under several checkpoints
    shot(page, "24-compare-same-seed")
    page.close()


def test_retry_failed_button_makes_the_failed_images_again(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    servers = ui_app.backend.simulator.servers  # type: ignore[union-attr]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(ui_app.local_url)
    retry = page.locator("#dg-retry")
    try:
        for server in servers:
            server.faults.fail_checkpoints = {DREAMSHAPER}
        page.locator("#dg-prompt textarea").fill("a lighthouse at dusk")
        page.locator("#dg-generate").click()
        expect(page.locator("#dg-status .dg-error")).to_contain_text("failed", timeout=60_000)
        failed_batch = current_batch(page)
        assert failed_batch
    finally:
        for server in servers:
            server.faults.fail_checkpoints = set()
    lost = [i for i in batch_json(ui_app, failed_batch)["images"] if i["status"] == "failed"]
    assert lost and {i["checkpoint"] for i in lost} == {DREAMSHAPER}
    expect(retry).to_be_enabled(timeout=15_000)
    expect(retry).to_have_text(f"Retry {len(lost)} failed")
    retry.click()
    wait_for_new_batch(page, failed_batch, len(lost))
    again = batch_json(ui_app, current_batch(page) or "")["images"]
    assert sorted((i["seed"], i["batch_index"], i["checkpoint"]) for i in again) == sorted(
        (i["seed"], i["batch_index"], i["checkpoint"]) for i in lost)
    expect(retry).to_be_disabled(timeout=15_000)  # nothing failed in the open batch now
    shot(page, "25-retried")
    page.close()


def test_compare_by_touch_at_phone_width(ui_app: RunningApp, browser) -> None:  # noqa: ANN001
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(ui_app.local_url)
    generate(page, "a tabby cat on a windowsill", count=4)
    batch_id = current_batch(page)
    assert batch_id
    page.get_by_label("More tabs").tap()  # at phone width the later tabs sit in Gradio's overflow menu
    page.locator(".overflow-dropdown button", has_text="Compare").tap()
    boxes = page.locator("#dg-compare-chosen input[type=checkbox]")
    expect(boxes).to_have_count(4, timeout=15_000)
    boxes.nth(1).tap()
    boxes.nth(2).tap()
    page.locator("#dg-compare-show").tap()
    board = page.locator("#dg-compare-board button.thumbnail-item")
    expect(board).to_have_count(2, timeout=15_000)
    board.nth(0).tap()
    picked = page.locator("#dg-compare-picked")
    expect(picked).to_be_visible(timeout=15_000)
    selected = [i["image_id"] for i in batch_json(ui_app, batch_id)["images"] if i["selected"]]
    assert selected == [picked.get_attribute("data-image")]
    shot(page, "26-compare-phone")
    page.close()
