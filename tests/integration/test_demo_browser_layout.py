"""Every tab as a person sees it, in headless chromium (Debian's, through Playwright),
on a laptop (1280 x 900) and on a phone (390 x 844): after a normal action on the
tab, nothing runs past the right edge of the screen and no "Error" or traceback
shows. Each test leaves a screenshot in $PATCHCORE_SCREENSHOTS (default: the test's
temporary folder); docs/ holds the ones we looked at."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from browser import ARGS, CHROMIUM, NEEDS_CHROMIUM

pytestmark = [
    pytest.mark.browser,
    NEEDS_CHROMIUM,
]

SIZES = {"laptop": (1280, 900), "phone": (390, 844)}

# Elements whose right edge lies past the screen (hidden ones and those inside a box that
# scrolls or clips sideways do not count: the visitor sees no overflow there).
OVERFLOW_JS = """() => {
  const W = document.documentElement.clientWidth, out = [];
  const clipped = (el) => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const s = getComputedStyle(p); if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) {
        const r = p.getBoundingClientRect(); if (r.right <= W + 1) return true; } } return false; };
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || s.visibility === 'hidden' || s.display === 'none') continue;
    if (r.right > W + 1 && !clipped(el))
      out.push(`${el.tagName.toLowerCase()}#${el.id}.${String(el.className).slice(0, 40)} ` +
               `right=${Math.round(r.right)}`);
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth,
          over: out.slice(0, 10)};
}"""
ERROR_TEXT = re.compile(r"\bError\b|Traceback|UnidentifiedImageError|/tmp/gradio")




@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url, size):
    w, h = SIZES[size]
    page = browser.new_page(viewport={"width": w, "height": h})
    page.goto(url)
    page.wait_for_selector("#image-in input[type=file]", state="attached", timeout=60_000)
    return page


def open_tab(page, name: str):
    tab = page.get_by_role("tab", name=name)
    assert tab.is_visible(), f"the {name!r} tab is hidden (behind a menu?)"
    tab.click()


def wait_text(page, elem_id: str, text: str, timeout: int = 180_000):
    page.wait_for_function("([id, t]) => (document.getElementById(id)?.innerText || '').includes(t)",
                           arg=[elem_id, text], timeout=timeout)


def text_of(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text()


def field(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} input, #{elem_id} textarea").first.input_value()


def check_page(page, tmp_path, name: str) -> Path:
    """Screenshot, then: no horizontal overflow, no visible error or traceback."""
    page.wait_for_timeout(800)  # plots and images finish drawing
    folder = Path(os.environ.get("PATCHCORE_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"{name}.png"
    page.screenshot(path=str(shot), full_page=True)
    facts = page.evaluate(OVERFLOW_JS)
    assert facts["scrollWidth"] <= facts["width"] and not facts["over"], \
        f"{name}: runs past the screen: {facts}"
    visible = page.locator("body").inner_text()
    found = ERROR_TEXT.search(visible)
    context = visible[max(0, found.start() - 200):found.end() + 200] if found else ""
    assert not found, f"{name}: the page shows {found.group(0)!r}: ...{context}"
    return shot


def click_example(page, label: str):
    page.get_by_text(label, exact=True).first.click()  # an example's label (nothing else reads so)


@pytest.mark.parametrize("size", SIZES)
def test_inspect_tab(browser, app_url, tmp_path, size):
    page = open_page(browser, app_url, size)
    # before any image: no score of 0, no verdict
    assert field(page, "score") == "" and field(page, "norm") == "" and field(page, "verdict") == ""
    click_example(page, "hole")
    page.wait_for_function("() => (document.querySelector('#explain-text')?.innerText || '')"
                           ".includes('most anomalous')", timeout=120_000)
    assert field(page, "verdict") == "anomalous"
    # the verdict is one word on one line, not "anomal ous"
    box = page.locator("#verdict textarea, #verdict input").first
    assert page.evaluate("(e) => e.scrollHeight <= e.clientHeight + 2 && e.scrollWidth <= e.clientWidth + 2",
                         box.element_handle()), "the verdict does not fit its field"
    if size == "laptop":  # the answer to "why?" is in sight without scrolling
        answer = page.locator("#explain-text").bounding_box()
        assert answer["y"] + 20 < SIZES[size][1], f"the explanation starts below the fold: {answer}"
    # clicking the heatmap marks the clicked patch on it
    page.wait_for_timeout(1500)  # the mark of the default patch has landed
    before = page.locator("#overlay img").get_attribute("src")
    page.locator("#overlay img").scroll_into_view_if_needed()
    img = page.locator("#overlay img").bounding_box()
    page.mouse.click(img["x"] + 0.15 * img["width"], img["y"] + 0.85 * img["height"])
    wait_text(page, "explain-text", "you picked")
    page.wait_for_function("(b) => document.querySelector('#overlay img')?.getAttribute('src') !== b",
                           arg=before, timeout=60_000)
    check_page(page, tmp_path, f"inspect_{size}")


@pytest.mark.parametrize("size", SIZES)
def test_build_your_own_tab(browser, app_url, tmp_path, size):
    page = open_page(browser, app_url, size)
    open_tab(page, "Build your own")
    page.get_by_role("button", name=re.compile("built-in good images")).click()
    page.wait_for_timeout(1500)
    page.click("#fit")
    wait_text(page, "fit-message", "Done")
    # the Inspect examples now are the visitor's own training images, and say so
    open_tab(page, "Inspect")
    wait_text(page, "examples", "your model's own training images", timeout=60_000)
    open_tab(page, "Build your own")
    check_page(page, tmp_path, f"build_{size}")


@pytest.mark.parametrize("size", SIZES)
def test_threshold_tab(browser, app_url, tmp_path, size):
    page = open_page(browser, app_url, size)
    open_tab(page, "Threshold")
    # no meaningless 0-1 slider before a set is scored
    assert not page.locator("#set-threshold").is_visible()
    page.click("#evaluate")
    wait_text(page, "set-summary", "AUROC")
    assert "built-in brick test set" in text_of(page, "set-summary")
    assert page.locator("#set-threshold").is_visible()
    page.wait_for_selector("#set-roc img", timeout=30_000)
    check_page(page, tmp_path, f"threshold_{size}")


@pytest.mark.parametrize("size", SIZES)
def test_batch_tab(browser, app_url, brick, tmp_path, size):
    bad = tmp_path / "a_file_with_a_rather_long_name_that_is_not_an_image_at_all.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    page = open_page(browser, app_url, size)
    open_tab(page, "Batch")
    page.set_input_files("#batch-files input[type=file]", [str(t.path) for t in brick.test[::6]] + [str(bad)])
    page.wait_for_timeout(1500)
    page.click("#batch-run")
    wait_text(page, "batch-summary", "could not be read")
    check_page(page, tmp_path, f"batch_{size}")


@pytest.mark.parametrize("size", SIZES)
def test_compare_tab(browser, app_url, brick, tmp_path, size):
    page = open_page(browser, app_url, size)
    open_tab(page, "Compare")
    hole = next(t.path for t in brick.test if t.defect == "hole")
    page.set_input_files("#cmp-image input[type=file]", str(hole))
    page.wait_for_timeout(1500)
    page.click("#cmp-run")
    wait_text(page, "cmp-message", "One colour scale")
    assert "built-in brick good images" in text_of(page, "cmp-message")
    page.wait_for_selector("#cmp-plot img", timeout=30_000)
    check_page(page, tmp_path, f"compare_{size}")


@pytest.mark.parametrize("size", SIZES)
def test_model_card_tab(browser, app_url, tmp_path, size):
    page = open_page(browser, app_url, size)
    click_example(page, "good")
    page.wait_for_function("() => (document.querySelector('#verdict textarea, #verdict input')?.value || '')"
                           ".length > 0", timeout=120_000)
    open_tab(page, "Model card")
    # the predict time is measured now, and the card says so
    page.wait_for_function("() => !document.body.innerText.includes('not measured yet')", timeout=60_000)
    check_page(page, tmp_path, f"card_{size}")


def test_a_non_image_after_an_example_gets_the_friendly_message(browser, app_url, tmp_path):
    """After an example click, Gradio keeps a per-session copy of the image input; the
    upload check and the friendly message must survive it."""
    notes = tmp_path / "notes.png"
    notes.write_text("just some text, not an image")
    page = open_page(browser, app_url, "laptop")
    click_example(page, "hole")
    page.wait_for_function("() => (document.querySelector('#verdict textarea, #verdict input')?.value || '')"
                           ".length > 0", timeout=120_000)
    page.set_input_files("#image-in input[type=file]", str(notes))
    wait_text(page, "message", "not a readable image", timeout=60_000)
    assert "accepted:" in text_of(page, "message")
    check_page(page, tmp_path, "non_image_after_example")
