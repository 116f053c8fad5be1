"""mt explore: the page opened in a real headless Chromium (Debian's chromium, driven by
Playwright); skipped with a reason where either is missing."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from mt.cli.main import main
from mt.export import open_translator

from .conftest import train_tiny

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium (see the README)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def transformer_dir(tmp_path_factory, corpus_dir) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tf"), corpus_dir, "model=transformer", "model.heads=2",
                      "model.enc_layers=2", "model.dec_layers=2") / "model"


@pytest.fixture(scope="module")
def page_file(trained_model_dir, transformer_dir, corpus_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "explore.html"
    assert main(["explore", str(trained_model_dir), str(transformer_dir), "--src-file", str(corpus_dir / "test.en"),
                 "--ref-file", str(corpus_dir / "test.de"), "--gold", str(corpus_dir / "test.align"),
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def test_the_page_is_one_file_with_nothing_to_fetch(page_file):
    html = page_file.read_text()
    assert "<script src" not in html and "<link" not in html and "http://" not in html and "https://" not in html


def test_the_explorer_works_in_a_real_browser(page_file, browser, trained_model_dir, corpus_dir, tmp_path):
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    page.wait_for_selector("#map .cell")
    assert errors == []
    assert requests == [page_file.as_uri()]  # the file itself; nothing from a network
    sources = (corpus_dir / "test.en").read_text().splitlines()
    assert page.locator("#list li").count() == len(sources) == 20

    # Choosing a sentence shows it.
    page.locator("#list li").nth(2).click()
    assert sources[2] in page.locator("#texts").inner_text()
    # Hovering a target token outlines its row and lights the source tokens it attends to ...
    cols = page.locator("#map .tok.src").count()
    page.locator("#map .tok.tgt").first.hover()
    assert page.locator("#map .cell.hl").count() == cols
    assert page.locator("#map .tok.src.attended").count() >= 1
    # ... and hovering a source token, its column and the target tokens that attend to it.
    rows = page.locator("#map .tok.tgt").count()
    page.locator("#map .tok.src").first.hover()
    assert page.locator("#map .cell.hl").count() == rows

    # The threshold slider shows the links mt align --rule threshold writes (the reference forced).
    page.locator("#threshold").evaluate("(e) => { e.value = '0.3'; e.dispatchEvent(new Event('input')); }")
    shown = page.locator("#links").get_attribute("data-pharaoh")
    from mt.decoding.attention_alignment import align_pairs, threshold_links

    refs = (corpus_dir / "test.de").read_text().splitlines()
    pair = align_pairs(open_translator(str(trained_model_dir), "cpu"), [sources[2]], [refs[2]])[0]
    words = pair.word_attention
    expected = {f"{i}-{j}" for i, j in threshold_links(__import__("torch").from_numpy(words), 0.3)}
    near = {f"{i}-{j}" for j, i in zip(*np.nonzero(np.abs(words - 0.3) < 1e-3))}  # 16-bit storage rounds
    assert set(shown.split()) - near == expected - near
    # Gold links are drawn over the forced map.
    assert page.locator("#map .cell.gold-sure, #map .cell.gold-possible").count() >= 1
    # Word view: one column per source word.
    page.locator("#unit-words").click()
    assert page.locator("#map .tok.src").count() == len(sources[2].split())

    # Keyboard: down is the next sentence, right the next model (the Transformer: a grid of heads).
    page.locator("#list li").nth(0).click()
    page.keyboard.press("ArrowDown")
    assert page.locator("#list li.current").get_attribute("data-id") == "1"
    page.keyboard.press("ArrowRight")
    assert page.locator("#models button").nth(1).get_attribute("aria-pressed") == "true"
    assert page.locator("#heads figure").count() == 2 * 2 + 1  # summary + 2 layers x 2 heads
    before = page.locator("#map .cell").first.get_attribute("style")
    page.locator("#heads figure").nth(1).click()
    assert page.locator("#heads figure.current figcaption").inner_text() == "L1 H1"
    assert page.locator("#map .cell").first.get_attribute("style") != before or page.locator("#map .cell").count()

    # Search filters the list; sorting by length puts the shortest first.
    page.locator("#search").fill(sources[5].split()[1])
    assert 1 <= page.locator("#list li").count() < 20
    page.locator("#search").fill("")
    page.locator("#sort").select_option("len-up")
    first = int(page.locator("#list li").first.get_attribute("data-id"))
    assert len(sources[first].split()) == min(len(s.split()) for s in sources)

    import matplotlib.image

    shot = matplotlib.image.imread(io.BytesIO(page.screenshot(full_page=False)), format="png")
    assert shot.std() > 0.05  # not blank
    assert errors == []
