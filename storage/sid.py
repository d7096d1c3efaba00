"""The semantic-ID grammar, shared by synth (building SIDs), curation (checking them), review/viewer
(rendering them) and trainers (tokenizer extension, constrained decoding).

    <|sid_begin|><s_a_12><s_b_201><s_c_7>[<s_d_3>]<|sid_end|>

Level letters are a, b, c, … in order; each code is a non-negative integer below the level's codebook size.
The optional last level (by default `d`) only exists for items whose first L codes collide.
"""
from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SID_BEGIN = "<|sid_begin|>"
SID_END = "<|sid_end|>"
CODE_TOKEN_PREFIX = "<s_"
"""What every code token starts with (`<s_a_12>`): counting it counts code tokens."""
LETTERS = string.ascii_lowercase

# Patterns as strings in the common subset of Python `re` and RE2 (DuckDB's regexp_*, pyarrow.compute), no
# single quotes, so they can be inlined into SQL literals. Everything outside this module that needs the SID
# grammar in a regex or in SQL takes it from here.
_B, _E = re.escape(SID_BEGIN), re.escape(SID_END)
CODE_TOKEN_PATTERN = r"<s_[a-z]_\d+>"
SID_PATTERN = rf"{_B}((?:{CODE_TOKEN_PATTERN})+){_E}"
"""A well-formed SID; group 1 is its code tokens (`<s_a_1><s_b_2>`)."""
SID_SQL_PATTERN = rf"{_B}(?:{CODE_TOKEN_PATTERN})+{_E}"
"""The same without a capture group (for `regexp_extract_all(text, pattern)` → whole SIDs)."""

CODE_TOKEN_RE = re.compile(r"<s_([a-z])_(\d+)>")
# A well-formed SID anywhere in free text.
SID_RE = re.compile(SID_PATTERN)
# Anything that looks like an attempt at a SID (for naming malformed ones in curation reasons).
SID_LIKE_RE = re.compile(rf"{_B}.*?(?:{_E}|(?=\s)|$)|(?:{CODE_TOKEN_PATTERN})+")
# An open SID prefix: the begin tag and code tokens NOT followed by another code token or the end tag
# (`<|sid_begin|><s_a_12>` in token alignment). Python only (look-ahead); group 1 is the code tokens.
OPEN_PREFIX_RE = re.compile(rf"{_B}((?:{CODE_TOKEN_PATTERN})+)(?!{re.escape(CODE_TOKEN_PREFIX)}|{_E})")


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def sid_prefix_sql(codes_expr: str, levels: int) -> str:
    """A DuckDB expression for the open SID prefix of the first `levels` codes of a list expression:
    `sid_prefix_sql("codes", 2)` → `'<|sid_begin|><s_a_' || codes[1] || '><s_b_' || codes[2] || '>'`."""
    parts = [_sql_str(SID_BEGIN)]
    for lv in range(levels):
        parts += [_sql_str(f"<s_{LETTERS[lv]}_"), f"{codes_expr}[{lv + 1}]", _sql_str(">")]
    sql = " || ".join(parts)
    return sql.replace("' || '", "")           # merge adjacent literals: readable SQL


def sid_from_codes_sql(tokens_expr: str) -> str:
    """A DuckDB expression wrapping code tokens (`<s_a_1><s_b_2>`, SID_PATTERN's group 1) into a full SID."""
    return f"{_sql_str(SID_BEGIN)} || {tokens_expr} || {_sql_str(SID_END)}"


def count_sql(text_expr: str, token: str) -> str:
    """A DuckDB expression counting non-overlapping occurrences of `token` (e.g. SID_BEGIN, CODE_TOKEN_PREFIX)
    in a text expression, without a regex."""
    return f"((length({text_expr}) - length(replace({text_expr}, {_sql_str(token)}, ''))) // {len(token)})"


class SidFormatError(ValueError):
    """A string that is not a well-formed SID; the message says why."""


def code_token(level: int, code: int) -> str:
    return f"<s_{LETTERS[level]}_{int(code)}>"


def format_sid(codes: Sequence[int]) -> str:
    """(12, 201, 7) → '<|sid_begin|><s_a_12><s_b_201><s_c_7><|sid_end|>'."""
    if not codes:
        raise SidFormatError("a SID needs at least one code")
    if len(codes) > len(LETTERS):
        raise SidFormatError(f"a SID has at most {len(LETTERS)} levels, got {len(codes)}")
    for c in codes:
        if int(c) < 0:
            raise SidFormatError(f"codes are non-negative integers, got {c}")
    return SID_BEGIN + "".join(code_token(i, c) for i, c in enumerate(codes)) + SID_END


def sid_tokens_of(codes: Sequence[int]) -> list[str]:
    """The token sequence of a SID (begin, one token per level, end)."""
    return [SID_BEGIN] + [code_token(i, c) for i, c in enumerate(codes)] + [SID_END]


def parse_sid(text: str, *, min_levels: int = 1, max_levels: int | None = None,
              codebook_sizes: Sequence[int] | None = None) -> tuple[int, ...]:
    """Parse one SID string into its codes; raise SidFormatError naming what is wrong."""
    s = text.strip()
    if not s.startswith(SID_BEGIN):
        raise SidFormatError(f"missing {SID_BEGIN} at the start of {text!r}")
    if not s.endswith(SID_END):
        raise SidFormatError(f"missing {SID_END} at the end of {text!r}")
    body = s[len(SID_BEGIN):-len(SID_END)]
    codes: list[int] = []
    pos = 0
    for m in CODE_TOKEN_RE.finditer(body):
        if m.start() != pos:
            raise SidFormatError(f"unexpected text {body[pos:m.start()]!r} inside {text!r}")
        letter, code = m.group(1), int(m.group(2))
        expected = LETTERS[len(codes)]
        if letter != expected:
            raise SidFormatError(f"level {len(codes) + 1} should be <s_{expected}_…>, got <s_{letter}_{code}> "
                                 f"in {text!r}")
        if codebook_sizes is not None and len(codes) < len(codebook_sizes) and code >= codebook_sizes[len(codes)]:
            raise SidFormatError(f"code {code} at level {letter} is outside the codebook (size "
                                 f"{codebook_sizes[len(codes)]}) in {text!r}")
        codes.append(code)
        pos = m.end()
    if pos != len(body):
        raise SidFormatError(f"unexpected text {body[pos:]!r} inside {text!r}")
    if len(codes) < min_levels:
        raise SidFormatError(f"{text!r} has {len(codes)} level(s), at least {min_levels} required")
    if max_levels is not None and len(codes) > max_levels:
        raise SidFormatError(f"{text!r} has {len(codes)} levels, at most {max_levels} allowed")
    return tuple(codes)


def is_valid_sid(text: str, **kw: Any) -> bool:
    try:
        parse_sid(text, **kw)
        return True
    except SidFormatError:
        return False


def extract_sids(text: str | None) -> list[str]:
    """All well-formed SIDs in free text, in order of appearance."""
    if not text:
        return []
    return [m.group(0) for m in SID_RE.finditer(text)]


def find_malformed_sids(text: str | None) -> list[str]:
    """Fragments that look like SIDs but do not parse (e.g. a missing end tag, a skipped level)."""
    if not text:
        return []
    bad = []
    for m in SID_LIKE_RE.finditer(text):
        frag = m.group(0).strip()
        if frag and not is_valid_sid(frag):
            bad.append(frag)
    return bad


def prefix(sid: str, levels: int) -> tuple[int, ...]:
    return parse_sid(sid)[:levels]


def vocabulary(levels: int, codebook_size: int, extra_level_size: int = 0) -> list[str]:
    """Every special token to add to a tokenizer: begin/end plus one token per (level, code)."""
    toks = [SID_BEGIN, SID_END]
    for lv in range(levels):
        toks += [code_token(lv, c) for c in range(codebook_size)]
    if extra_level_size:
        toks += [code_token(levels, c) for c in range(extra_level_size)]
    return toks


def vocabulary_for(sids: Iterable[str]) -> list[str]:
    """The special tokens needed for exactly these SIDs (begin/end first, then sorted code tokens)."""
    seen: set[str] = set()
    for s in sids:
        for i, c in enumerate(parse_sid(s)):
            seen.add(code_token(i, c))
    return [SID_BEGIN, SID_END] + sorted(seen, key=lambda t: (t[3], int(t[5:-1])))


@dataclass
class _Node:
    children: dict[str, _Node] = field(default_factory=dict)
    terminal: bool = False


class SidTrie:
    """Prefix trie over SID token sequences, for constrained decoding: `allowed(prefix)` returns exactly the
    tokens that continue `prefix` towards some SID in the catalog."""

    def __init__(self, sids: Iterable[str | Sequence[int]]):
        self.root = _Node()
        self.size = 0
        for s in sids:
            codes = parse_sid(s) if isinstance(s, str) else tuple(int(c) for c in s)
            node = self.root
            for tok in sid_tokens_of(codes):
                node = node.children.setdefault(tok, _Node())
            if not node.terminal:
                node.terminal = True
                self.size += 1

    def __len__(self) -> int:
        return self.size

    def _walk(self, prefix: Sequence[str]) -> _Node | None:
        node = self.root
        for tok in prefix:
            nxt = node.children.get(tok)
            if nxt is None:
                return None
            node = nxt
        return node

    def allowed(self, prefix: Sequence[str]) -> list[str]:
        """Tokens allowed after `prefix` (a list of SID tokens starting at <|sid_begin|>); [] when complete or
        invalid."""
        node = self._walk(prefix)
        return sorted(node.children) if node else []

    def contains(self, sid: str) -> bool:
        try:
            node = self._walk(sid_tokens_of(parse_sid(sid)))
        except SidFormatError:
            return False
        return bool(node and node.terminal)

    def to_ids(self, token_to_id: Mapping[str, int]) -> IdTrie:
        """The same trie over token ids of a tokenizer (after the SID tokens were added to it)."""
        return IdTrie(self, token_to_id)


class IdTrie:
    """SidTrie over integer token ids: `allowed_ids(prefix_ids)` for transformers' `prefix_allowed_tokens_fn`
    and vLLM logits processors."""

    def __init__(self, trie: SidTrie, token_to_id: Mapping[str, int]):
        missing = [t for t in _all_tokens(trie.root) if t not in token_to_id]
        if missing:
            raise KeyError(f"{len(missing)} SID tokens are not in the tokenizer (e.g. {missing[:3]}); "
                           "extend the tokenizer with storage.sid.vocabulary_for(...) first")
        self.begin_id = token_to_id[SID_BEGIN]
        self.end_id = token_to_id[SID_END]
        self.root: dict[int, Any] = {}
        stack = [(trie.root, self.root)]
        while stack:
            src, dst = stack.pop()
            for tok, child in src.children.items():
                nxt: dict[int, Any] = {}
                dst[token_to_id[tok]] = nxt
                stack.append((child, nxt))

    def allowed_ids(self, prefix_ids: Sequence[int]) -> list[int]:
        node = self.root
        for t in prefix_ids:
            nxt = node.get(int(t))
            if nxt is None:
                return []
            node = nxt
        return list(node.keys())


def _all_tokens(node: _Node) -> set[str]:
    out: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        for tok, child in n.children.items():
            out.add(tok)
            stack.append(child)
    return out
