"""Benchmark: how long the subscribe form's proof of work takes in headless Chromium.

Run from the project root: ``.venv/bin/python bench/pow.py [--bits 14,16,18,20] [--runs 5]``.
A real server (uvicorn on 127.0.0.1) serves the landing page with ``web.pow_bits`` set; Debian's
chromium (``/usr/bin/chromium``, through Playwright) opens it, and the time from the page's
load to the script's nonce (the form's ``data-pow`` turning ``solved``) is measured. Each run is
a fresh challenge, so times vary with luck (a geometric distribution around 2**bits hashes):
the median and the slowest run are printed, with the server's time to check one nonce.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from web.serve import free_port, serving, web_app

from service.clock import FixedClock
from service.web.proof import Proofs, solve

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bits", default="14,16,18,20")
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    print(f"{'bits':>4}  {'median s':>9}  {'slowest s':>9}  {'check µs':>8}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        for bits in (int(b) for b in options.bits.split(",")):
            times = []
            with tempfile.TemporaryDirectory() as folder:
                port = free_port()
                clock = FixedClock(datetime.now(UTC))
                url = f"sqlite:///{folder}/paperboy.db"
                with (
                    web_app(Path(folder), url, clock, port, pow_bits=bits) as app,
                    serving(app, port) as base,
                ):
                    for _ in range(options.runs):
                        page = browser.new_page()
                        started = time.perf_counter()
                        page.goto(f"{base}/", wait_until="domcontentloaded")
                        page.wait_for_selector("form[data-pow=solved]", timeout=300_000)
                        times.append(time.perf_counter() - started)
                        page.close()
                    del app
            print(
                f"{bits:>4}  {statistics.median(times):>9.2f}  {max(times):>9.2f}  "
                f"{check_micros(bits):>8.1f}"
            )
        browser.close()


def check_micros(bits: int) -> float:
    """The server's time to check one solved challenge, in microseconds."""
    proofs = Proofs(b"k" * 32, bits)
    rounds = []
    for _ in range(20):
        challenge = proofs.issue(time.time())
        assert challenge is not None
        nonce = solve(challenge, bits)
        started = time.perf_counter()
        proofs.check(challenge, nonce, time.time())
        rounds.append(time.perf_counter() - started)
    return min(rounds) * 1e6


if __name__ == "__main__":
    main()
