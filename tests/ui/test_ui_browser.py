"""`recot ui` for real: the command starts Streamlit on a free port, headless Chromium loads it, opens a trace,
takes a screenshot, and checks that a <script> injected in a trace is shown as text and never runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from testutil import free_port
from ui_workspace import SCRIPT

from storage.datasets import write_version

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"recot ui exited with {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"viewer not healthy at {url} after {timeout}s")


def _settle(page, timeout_ms: int = 30_000) -> None:
    """Wait until Streamlit has finished the current script run (its "Running…" status widget is gone), so
    the next click doesn't land on an element a rerun is about to replace."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout_ms)
    page.wait_for_timeout(300)


@pytest.fixture
def viewer_server(viewer_ws_copy, tmp_path):
    """`recot ui` as a subprocess in its own process group; always killed at the end."""
    port = free_port()
    log = open(tmp_path / "recot-ui.log", "w+")
    recot = Path(sys.executable).with_name("recot")
    cmd = [str(recot)] if recot.exists() else [sys.executable, "-m", "ui.cli"]
    proc = subprocess.Popen(cmd + ["ui", "--workspace", str(viewer_ws_copy.root), "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false"))
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            _wait_healthy(url, proc)
        except Exception:
            log.seek(0)
            raise RuntimeError(log.read()) from None
        yield url, viewer_ws_copy
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=15)
        log.close()


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.skip("no /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            yield page
        finally:
            browser.close()


def test_recot_ui_in_a_real_browser(viewer_server, browser_page, tmp_path):
    url, ws = viewer_server
    page = browser_page
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Review progress").wait_for(timeout=60_000)  # the last section: the run is complete
    body = page.inner_text("body")
    for want in ("recot viewer", "Overview", "Datasets", "Runs", "Review progress"):
        assert want in body
    # grid cells live in a hidden accessibility table behind the canvas
    page.get_by_text("r3_recommend-curated@v1").first.wait_for(state="attached", timeout=30_000)
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)

    # A job lands a new version while the page is open: the write is not blocked by the viewer, and the
    # overview shows it without a click (auto-refresh).
    write_version(ws, "late-arrival", pa.table({"x": [1, 2, 3]}), step="test")
    page.get_by_text("late-arrival@v1").first.wait_for(state="attached", timeout=30_000)

    # Traces: search for the injected script, open that trace.
    _settle(page)
    page.get_by_text("Traces", exact=True).first.click()
    search = page.get_by_label("Search prompt, reasoning and answer")
    search.wait_for(timeout=30_000)
    search.fill("script")
    search.press("Enter")
    page.get_by_text("1 of 8 samples match").wait_for(timeout=30_000)
    _settle(page)
    # one click on the row opens the trace (the row-selection marker at the grid's left edge, first data row)
    grid = page.locator('[data-testid="stDataFrame"]').last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
    page.get_by_text("User history").wait_for(timeout=30_000)
    assert page.locator('input[aria-label="Sample id"]').input_value() == "s2"
    page.get_by_text("Annotator responses").wait_for(timeout=30_000)
    _settle(page)
    shot = tmp_path / "trace.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    text = page.inner_text("body")
    assert SCRIPT in text, "the injected script should be visible as literal text"
    assert "<b>not bold</b>" in text
    assert "Movie 2 (1992)" in text  # SID rendered as its title
    # ... and it never ran: no global set, title untouched, no <script>/<b> element made from model text.
    assert page.evaluate("() => window.__pwned") is None
    assert page.title() != "PWNED"
    assert page.evaluate("() => Array.from(document.querySelectorAll('script'))"
                         ".filter(s => s.textContent.includes('__pwned')).length") == 0
    assert page.evaluate("() => Array.from(document.querySelectorAll('b'))"
                         ".filter(b => b.textContent === 'not bold').length") == 0
