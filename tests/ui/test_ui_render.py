"""Model text stays text: SIDs become titles, hallucinated/malformed SIDs are flagged, and nothing from the
model can become markup."""
from __future__ import annotations

import re

from storage.sid import format_sid
from ui.viewer.render import escape_markdown, segments, short_sid, to_markdown, to_plain

KNOWN = format_sid([1, 2, 3])
LOOKUP = {KNOWN: {"item_id": "42", "title": "Heat (1995)"}}


def test_segments_classify_known_hallucinated_and_malformed():
    text = f"I pick {KNOWN}, not {format_sid([7, 7, 7])} nor <|sid_begin|><s_a_1><s_c_2><|sid_end|> ok"
    segs = segments(text, LOOKUP)
    assert [s.kind for s in segs] == ["text", "sid", "text", "hallucinated", "text", "malformed", "text"]
    assert segs[1].title == "Heat (1995)" and segs[1].item_id == "42"
    assert "".join(s.text for s in segs) == text  # nothing lost or reordered
    assert to_plain(segs) == ("I pick [Heat (1995)], not [HALLUCINATED a7·b7·c7] nor "
                              "[MALFORMED <|sid_begin|><s_a_1><s_c_2><|sid_end|>] ok")


def test_unterminated_sid_is_malformed():
    segs = segments("answer: <|sid_begin|><s_a_1><s_b_2>", LOOKUP)
    assert [s.kind for s in segs] == ["text", "malformed"]


def test_escape_markdown_neutralises_html_markdown_and_directives():
    nasty = "<script>alert(1)</script> **bold** :red[x] $x$ [link](http://e.x) # h\n    code\n1. item"
    out = escape_markdown(nasty)
    # every ASCII punctuation character is backslash-escaped, so none can open markup
    assert not re.search(r"(?<!\\)[<>*\[\]$#:()`]", out)
    assert "\\<script\\>" in out and "\\*\\*bold\\*\\*" in out
    lines = out.split("  \n")
    assert lines[1].startswith("\u00a0" * 4)  # indentation kept, but not a Markdown code block
    assert lines[2].startswith("1\\.")       # not a list


def test_to_markdown_escapes_titles_and_only_adds_its_own_markup():
    evil_title = {KNOWN: {"item_id": "1", "title": "<img src=x onerror=alert(1)> **T**"}}
    md = to_markdown(segments(f"<b>hi</b> {KNOWN} {format_sid([9, 9, 9])}", evil_title))
    assert "\\<b\\>hi\\</b\\>" in md.replace("\\/", "/")
    assert "\\<img src\\=x onerror\\=alert\\(1\\)\\>" in md
    assert ":red-background[**hallucinated SID a9·b9·c9**]" in md
    assert short_sid("not a sid") == "?"


def test_skeleton_rows_name_points_and_survive_a_sparse_skeleton():
    from ui.viewer.render import skeleton_rows

    sk = {"version": 1, "perception": [{"sid": KNOWN, "title": "Heat (1995)", "categories": [], "date": None}],
          "interest_points": [{"id": 3, "label": "crime", "sids": [KNOWN], "categories": ["Crime"],
                               "sid_prefix": None, "count": 1, "share": 1.0, "recent_count": 1, "last_date": None}],
          "evolution": {"periods": [{"start": None, "end": None, "items": 1, "dominant": None}],
                        "long_term": 3, "recent": 7, "shifts": []}, "target_point": None}
    rows = skeleton_rows(sk)
    assert rows["interest_points"][0]["SIDs"] == "a1·b2·c3" and rows["interest_points"][0]["share"] == "100%"
    assert rows["interest_points"][0]["target"] == "" and rows["periods"][0]["dominant"] is None
    summary = {r["what"]: r["value"] for r in rows["summary"]}
    assert summary == {"long-term interest": "(3) crime", "recent interest": "(7)", "history items": "1"}
    assert skeleton_rows({"version": 1}) == {"interest_points": [], "periods": [], "summary": [
        {"what": "history items", "value": "0"}]}
