"""A screenshot of the page ``mt serve`` shows, for the README. It measures nothing: the demo's
two models (after ``scripts/demo.sh``) translate one sentence, and the picture goes to docs/.

    .venv/bin/python bench/screenshot_serve.py runs/demo/rnn_bahdanau/model runs/demo/rnn_noattn/model \
        --text "the old man sees a small red car ." --out docs/serve.png

Starts ``mt serve`` with the models on a free loopback port, opens its page in Debian's
headless Chromium (Playwright), types the sentence, presses Enter, hovers the third target
piece of the first model and saves the page.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--text", default="the old man sees a small red car .")
    parser.add_argument("--out", default="serve.png")
    parser.add_argument("--width", type=int, default=1366)
    parser.add_argument("--height", type=int, default=768)
    ns = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "mt", "serve", *ns.models, "--port", str(port)], cwd=REPO)
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=FLAGS)
            page = browser.new_page(viewport={"width": ns.width, "height": ns.height})
            page.goto(url)
            page.wait_for_selector("#models input")
            page.fill("#text", ns.text)
            page.press("#text", "Enter")
            page.wait_for_selector(".card .translation")
            targets = page.locator(".card").first.locator(".tok.tgt")
            if targets.count() > 2:
                targets.nth(2).hover()
            page.screenshot(path=ns.out)
            browser.close()
        print(f"wrote {ns.out}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
