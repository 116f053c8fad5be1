"""A PNG of an `mt explore` page as a browser shows it (Debian's chromium, via Playwright):
the README's picture. It measures nothing; the page is the demo's two models on the demo
corpus's test set (after ``scripts/demo.sh``), and the picture goes to docs/, not bench/results/.

    mt explore runs/demo/rnn_noattn runs/demo/rnn_bahdanau --src-file data/demo/test.en \
        --ref-file data/demo/test.de --gold data/demo/test.align --out explore.html --max-sentences 200
    .venv/bin/python bench/screenshot_explorer.py explore.html docs/explorer.png --sentence 7 --model 1
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--sentence", type=int, default=0, help="position in the list to show")
    parser.add_argument("--model", type=int, default=0, help="which model's tab")
    parser.add_argument("--hover", type=int, default=2, help="hover this target token (-1: none)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    ns = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no chromium: apt-get install chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": ns.width, "height": ns.height})
        page.goto(Path(ns.page).resolve().as_uri())
        page.wait_for_selector("#map")
        page.locator("#models button").nth(ns.model).click()
        page.locator("#list li").nth(ns.sentence).click()
        if ns.hover >= 0 and page.locator("#map .tok.tgt").count() > ns.hover:
            page.locator("#map .tok.tgt").nth(ns.hover).hover()
        page.screenshot(path=ns.out)
        browser.close()
    print(f"wrote {ns.out}")


if __name__ == "__main__":
    main()
