"""The real Argilla web UI in headless Chromium, as an annotator: the pushed trace is readable (titles,
SIDs shown literally, the filters' suggestions), and an answer submitted by clicking in the UI comes back
through `recot review pull`. Set RECOT_REVIEW_SCREENSHOT=path.png to keep the screenshot."""
from __future__ import annotations

import os
import shutil

import pytest

pytestmark = [pytest.mark.argilla, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


def test_annotator_reviews_trace_in_browser(curated, tmp_path):
    from playwright.sync_api import sync_playwright

    from curation.review.client import argilla_client, find_dataset
    from curation.review.pull import pull
    from curation.review.push import push
    from curation.review.stack import connect
    from curation.review.users import add_annotator

    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), \
        "headless Chromium missing (scripts/setup.sh installs it)"
    ws, dv = curated
    res = push(ws, dv.ref, size=1, strategy="uncertain")
    add_annotator(ws, "dora", password="dora-pass-123")
    conn = connect(ws)
    with argilla_client(conn) as c:
        ds = find_dataset(c, "recot", res.argilla_dataset)
        (rec,) = list(ds.records(with_suggestions=False, with_responses=False))
        dataset_id, history, sample_id = ds.id, rec.fields["history"], rec.id
    shot = os.environ.get("RECOT_REVIEW_SCREENSHOT") or str(tmp_path / "argilla-trace.png")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1150})
            page.goto(f"{conn.url}/sign-in", wait_until="networkidle")
            page.locator("input").nth(0).fill("dora")
            page.locator("input[type=password]").fill("dora-pass-123")
            page.locator("button[type=submit]").click()
            page.wait_for_url(lambda u: "sign-in" not in u, timeout=60_000)
            page.goto(f"{conn.url}/dataset/{dataset_id}/annotation-mode", wait_until="networkidle")
            page.get_by_text("User history (titles [SID])").wait_for(timeout=60_000)
            body = page.inner_text("body")
            # markdown "1\. Movie k \(year\) `<|sid_begin|><s_a_…>…<|sid_end|>`": the UI shows the real SID
            sid_shown = history.split("`")[1]
            assert sid_shown.startswith("<|sid_begin|><s_a_") and sid_shown in body, (sid_shown, body[:2000])
            assert "\u2039" not in body and "Overall quality" in body and "hallucinated item" in body
            page.screenshot(path=shot)

            # answer like an annotator: rating 2, "no", then Submit
            page.get_by_role("button", name="Submit").wait_for(timeout=30_000)
            page.locator("label", has_text="2").first.click()
            page.get_by_text("Submit", exact=True).click()
            page.wait_for_timeout(2000)
        finally:
            browser.close()

    assert os.path.getsize(shot) > 10_000
    out = pull(ws, dv.ref)
    assert out.new >= 1
    rows = ws.query("SELECT status, rating, correct FROM reviews WHERE sample_id = ? AND annotator = 'dora'",
                    [sample_id])
    # rating 2 clicked (replacing the judge's pre-filled 3), "no" kept from the filters' suggestion
    assert rows == [("submitted", 2, "no")]
