"""Every lecture deck, as a teacher projects it: chromium at 1280x720 steps through each slide and fails
when something sticks out of the slide, is too small to read, or should not be on a slide at all.

    pytest -m browser tests/test_slides_browser.py

The decks are built once per session into build/test-decks/ (course_editions.write_slides), reusing the
runs that tests/test_notebooks.py keeps there and any deck whose notebook did not change since the last
session. A screenshot of each slide lands in build/test-decks/screenshots/NN_name/: look at them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from paths import ROOT

sys.path.insert(0, str(ROOT / "notebooks"))
import course_editions  # noqa: E402
import decks  # noqa: E402
import run_notebooks  # noqa: E402

sys.path.pop(0)
NAMES = run_notebooks.notebook_names()
OUT = course_editions.BUILD / "test-decks"
CHROMIUM = course_editions.CHROMIUM
MAX_SHOWN_CODE = 4  # code cells a deck shows (tag show-code): a few at most
MIN_FONT_PX = 13    # smallest text on screen at 1280x720
MIN_FIGURE_PX = 120  # a figure shrunk below this (on screen) is unreadable

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]

# What the page reports of the slide on screen: each element past the slide's edges, text below
# MIN_FONT_PX, figures shrunk below MIN_FIGURE_PX, and empty outputs.
PROBE = """([minFont, minFigure]) => {
  const slide = Reveal.getCurrentSlide();
  const box = document.querySelector('.reveal .slides').getBoundingClientRect();
  const scale = Reveal.getScale();
  const problems = [];
  const describe = el => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
      ? '.' + el.className.trim().split(/\\s+/).slice(0, 2).join('.') : '') + ' "'
      + (el.innerText || el.alt || '').trim().slice(0, 50) + '"';
  for (const el of slide.querySelectorAll('*')) {
    if (el.closest('aside.notes')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.bottom > box.bottom + 2 || r.right > box.right + 2 || r.left < box.left - 2
        || r.top < box.top - 2) {
      problems.push('outside the slide by ' + Math.round(Math.max(r.bottom - box.bottom, r.right - box.right,
                    box.left - r.left, box.top - r.top)) + ' px: ' + describe(el));
    }
    const text = Array.from(el.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
    const px = parseFloat(getComputedStyle(el).fontSize) * scale;
    // A formula is read at its own size: its sub- and superscripts are smaller by design.
    const formula = el.classList.contains('mjx-chtml');
    if (!formula && el.closest('.mjx-chtml')) continue;
    if ((text || formula) && px < minFont) problems.push('text of ' + px.toFixed(1) + ' px: ' + describe(el));
    if (el.tagName === 'IMG' && r.height < minFigure && el.naturalHeight >= minFigure)
      problems.push('a figure shrunk to ' + Math.round(r.height) + ' px: ' + describe(el));
  }
  for (const out of slide.querySelectorAll('.jp-OutputArea-output'))
    if (!out.innerText.trim() && !out.querySelector('img, svg, table')) problems.push('an empty output');
  if (slide.scrollHeight > Reveal.getConfig().height + 2)
    problems.push('the slide scrolls: ' + slide.scrollHeight);
  const backslash = String.fromCharCode(92);  // TeX left as text: MathJax did not typeset it
  if (slide.innerText.includes('$$') || slide.innerText.includes(backslash + 'frac'))
    problems.push('a formula shows as raw TeX (is MathJax loaded?)');
  return problems;
}"""

# The deck re-renders a slide's formulas when it is shown: wait for MathJax's queue before looking.
TYPESET = "() => new Promise(done => (window.MathJax && MathJax.Hub) ? MathJax.Hub.Queue(done) : done())"


@pytest.fixture(scope="session")
def built_decks():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    pytest.importorskip("playwright.sync_api")
    reveal = course_editions.BUILD / "slides" / course_editions.LOCAL_REVEAL
    if not course_editions.has_local_reveal(reveal.parent):
        pytest.skip("no local reveal.js (offline the CDN copy cannot load): run `make reveal`")
    OUT.mkdir(parents=True, exist_ok=True)
    if not (OUT / course_editions.LOCAL_REVEAL).exists():
        (OUT / course_editions.LOCAL_REVEAL).symlink_to(reveal.resolve(), target_is_directory=True)
    return course_editions.write_slides(NAMES, OUT, pdf=True)


@pytest.fixture(scope="session")
def browser(built_decks):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        yield b
        b.close()


def test_every_notebook_has_a_deck_and_a_pdf(built_decks):
    assert [d.name for d in built_decks] == [n.replace(".ipynb", ".slides.html") for n in NAMES]
    for deck in built_decks:
        html = deck.read_text(encoding="utf-8")
        assert "unpkg.com" not in html and "code.jquery.com" not in html, "a deck works offline"
        for path in {str(ROOT), str(Path.home()), sys.prefix, "/tmp/"}:
            assert path not in html, f"{deck.name} shows a path of the build machine: {path}"
        body = html[html.index("<main>"):html.index("</main>")]
        assert "Warning" not in body and "application/vnd.jupyter.stderr" not in body, "no stderr"
        assert deck.with_suffix(".pdf").stat().st_size > 10_000


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NAMES)
def test_every_slide_fits_1280x720(name, built_decks, browser):
    deck = OUT / name.replace(".ipynb", ".slides.html")
    shots = OUT / "screenshots" / name.removesuffix(".ipynb")
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        page.goto(deck.as_uri())
        page.wait_for_selector("body[data-fitted='1']", timeout=60_000)
        indices = page.evaluate("() => Reveal.getSlides().map(s => Reveal.getIndices(s))")
        first = page.locator(".reveal .slides section").first
        assert first.locator("h1").count() == 1 and "You will learn" in first.inner_text(), \
            "the title slide: the title and the objectives"
        assert page.locator("aside.notes").count() >= 1, "speaker notes (at least the title slide's)"
        n_code = page.locator(".reveal .jp-CodeCell .jp-InputArea .highlight").count()
        assert n_code <= MAX_SHOWN_CODE, f"{name}: {n_code} code cells shown"
        assert n_code == page.locator(f".reveal .celltag_{decks.SHOW_CODE} .highlight").count(), \
            "only cells tagged show-code show code"
        problems = []
        for k, ix in enumerate(indices):
            page.evaluate("([h, v]) => Reveal.slide(h, v)", [ix["h"], ix.get("v") or 0])
            page.evaluate(TYPESET)
            page.screenshot(path=str(shots / f"slide-{k:02d}.png"))
            problems += [f"slide {k} ({ix['h']}/{ix.get('v') or 0}): {p}"
                         for p in page.evaluate(PROBE, [MIN_FONT_PX, MIN_FIGURE_PX])]
        assert not problems, f"{name}:\n" + "\n".join(problems)
        pdf = deck.with_suffix(".pdf").read_bytes()
        n_pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
        assert n_pages == len(indices), f"the handout has {n_pages} pages for {len(indices)} slides"
    finally:
        page.close()
