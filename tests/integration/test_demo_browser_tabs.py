"""The classroom tabs (Threshold, Batch, Compare) and the inspect tab's new
controls, driven in headless chromium (Debian's, through Playwright).
Each test leaves a screenshot in $PATCHCORE_SCREENSHOTS (default: the test's
temporary folder); docs/ holds the ones we looked at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import ARGS, CHROMIUM, NEEDS_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    NEEDS_CHROMIUM,
]




@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1366, "height": 900})
        finally:
            browser.close()


def shoot(page, tmp_path, name: str) -> Path:
    folder = Path(os.environ.get("PATCHCORE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(700)  # let plots finish drawing
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def open_tab(page, url: str, name: str):
    page.goto(url)
    page.get_by_role("tab", name=name).click()


def wait_text(page, elem_id: str, text: str, timeout: int = 120_000):
    """Wait until the element's text contains ``text``."""
    page.wait_for_function("([id, t]) => (document.getElementById(id)?.innerText || '').includes(t)",
                           arg=[elem_id, text], timeout=timeout)


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def test_threshold_tab(page, app_url, tmp_path, fitted):
    open_tab(page, app_url, "Threshold")
    page.click("#evaluate")
    wait_text(page, "set-summary", "AUROC")
    summary = text_of(page, "set-summary")
    assert f"{fitted.threshold:.2f}" in summary and "12 good and 16 defective" in summary
    page.wait_for_selector("#set-roc img", timeout=30_000)
    # move the slider to its far right: no image is called anomalous, every defect is a miss
    number = page.locator("#set-threshold input[type=number]")
    top = float(number.get_attribute("max"))
    number.fill(str(top))
    number.press("Enter")
    wait_text(page, "set-summary", "0 defects found")
    assert "16 missed" in text_of(page, "set-summary")
    number.fill(f"{fitted.threshold:.3f}")
    number.press("Enter")
    wait_text(page, "set-summary", f"At {fitted.threshold:.2f}")
    shoot(page, tmp_path, "demo_threshold.png")


def test_batch_tab(page, app_url, brick, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    files = [str(t.path) for t in brick.test[::4]] + [str(bad)]
    open_tab(page, app_url, "Batch")
    page.set_input_files("#batch-files input[type=file]", files)
    page.wait_for_timeout(1500)  # uploads finish
    page.click("#batch-run")
    wait_text(page, "batch-summary", "files")
    summary = text_of(page, "batch-summary")
    assert f"{len(files)} files" in summary and "1 could not be read" in summary
    table = text_of(page, "batch-table")
    assert "broken.png" in table and "error" in table and "anomalous" in table
    page.wait_for_selector("#batch-csv a, #batch-csv .file-preview", timeout=30_000)
    shoot(page, tmp_path, "demo_batch.png")


def test_compare_tab(page, app_url, brick, tmp_path):
    hole = next(t.path for t in brick.test if t.defect == "hole")
    open_tab(page, app_url, "Compare")
    page.set_input_files("#cmp-image input[type=file]", str(hole))
    page.wait_for_timeout(1500)
    page.click("#cmp-run")
    wait_text(page, "cmp-message", "One colour scale", timeout=180_000)
    page.wait_for_selector("#cmp-overlay-a img", timeout=30_000)
    page.wait_for_selector("#cmp-overlay-b img", timeout=30_000)
    assert "coreset_ratio" in text_of(page, "cmp-cards")
    shoot(page, tmp_path, "demo_compare.png")


def test_inspect_tab_scale_switch_webcam_and_examples(page, app_url, brick, tmp_path):
    page.goto(app_url)
    page.wait_for_selector("#image-in input[type=file]", state="attached", timeout=60_000)
    assert "It knows brick images" in text_of(page, "model-line").replace("**", "")
    assert page.get_by_text("Examples of brick").count() >= 1
    # the image input offers a camera source
    camera = "#image-in button[aria-label*='webcam' i], #image-in button[aria-label*='camera' i]"
    assert page.locator(camera).count() >= 1
    hole = next(t.path for t in brick.test if t.defect == "good")
    page.set_input_files("#image-in input[type=file]", str(hole))
    page.wait_for_function(
        "() => { const v = document.querySelector('#verdict textarea, #verdict input');"
        " return v && v.value.length > 0; }", timeout=60_000)
    page.wait_for_selector("#overlay img", timeout=30_000)
    before = page.locator("#overlay img").get_attribute("src")
    page.get_by_label("per image").check()
    page.wait_for_function("(b) => document.querySelector('#overlay img')?.getAttribute('src') !== b",
                           arg=before, timeout=60_000)
    shoot(page, tmp_path, "demo_inspect.png")
