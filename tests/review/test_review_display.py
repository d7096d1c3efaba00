"""What Argilla shows of a sample: markdown that renders to exactly the model's text, SIDs as code spans — so a
SID copied from the review UI is a real SID (no ‹ › stand-ins)."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from curation.review.push import display_text

SID = "<|sid_begin|><s_a_12><s_b_40><s_c_7><|sid_end|>"


class _Text(HTMLParser):
    """The text a browser shows for rendered HTML (<br> and paragraph ends as newlines) and the code spans."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.code: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.parts.append("\n")
        self._in_code = tag == "code" or self._in_code

    def handle_endtag(self, tag):
        if tag == "p":
            self.parts.append("\n\n")
        if tag == "code":
            self._in_code = False

    def handle_data(self, data):
        self.parts.append(data)
        if self._in_code:
            self.code.append(data)


def _shown(md: str) -> _Text:
    p = _Text()
    p.feed(MarkdownIt("commonmark").render(md))
    return p


@pytest.mark.parametrize("text", [
    f"1. Heat (1995) {SID}\n2. Casino (1995) <|sid_begin|><s_a_1><|sid_end|>",
    f"<think>The user likes *crime* films_now # [x](y) & <b>bold</b> 3 > 2</think>\nAnswer: {SID} Casino",
    "malformed <s_a_9> stray and <|sid_end|> tokens; a backslash \\ and `ticks` - dash. end!",
])
def test_markdown_renders_to_exactly_the_text_and_sids_are_code_spans(text):
    shown = _shown(display_text(text))
    assert "".join(shown.parts).strip().replace("\n\n", "\n") == text
    assert "\u2039" not in display_text(text)
    for code in shown.code:
        assert code.startswith("<") and code.endswith(">")      # every code span is a SID (run), whole
    if SID in text:
        assert SID in shown.code
