"""Cheap text-quality filters: length, repetition, language. All vectorized over the completion column.

- length: characters of the completion / of the reasoning within bounds.
- repetition: share of word n-grams that are repeats (1 − distinct/total); a looping model repeats whole
  phrases, so this is high for degenerate text and near 0 for normal prose. The most repeated n-gram is
  named in the reason.
- language: two cheap signals, both configurable: the share of ASCII letters among letters (catches answers
  in another script), and the share of English stopwords among words (catches word salad / other Latin-script
  languages). SID tokens are removed first.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.base import Filter, FilterContext, FilterParams, P, Verdicts, register
from curation.text import Tokens, ngram_hashes, word_tokens
from storage.sid import SID_RE

STOPWORDS_EN = frozenset("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just like may me might more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too under until up
us very was we were what when where which while who whom why will with would you your yours yourself""".split())


def _col(table: pa.Table, name: str) -> pa.Array:
    c = table.column(name)
    return c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c


class TextStatisticFilter(Filter[P], review_label="format", rank_weight=0.0):
    """A filter scoring a text statistic (repetition ratio, stopword share): the score says nothing about
    correctness or usefulness, so it does not count in the rank score; a drop is a format issue for review."""


class LengthParams(FilterParams):
    min_chars: int = 1
    max_chars: int = 20000
    min_reasoning_chars: int = 0
    max_reasoning_chars: int = 16000


@register
class LengthFilter(Filter[LengthParams], type_name="length", review_label="format"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p: LengthParams = self.params
        n = table.num_rows
        comp_len = pc.fill_null(pc.utf8_length(_col(table, "_completion")), 0).to_numpy(zero_copy_only=False)
        r_len = pc.fill_null(pc.utf8_length(_col(table, "reasoning")), 0).to_numpy(zero_copy_only=False)
        think = pc.fill_null(_col(table, "think"), False).to_numpy(zero_copy_only=False)
        reasons: list[str | None] = [None] * n
        for i in np.flatnonzero((comp_len < p.min_chars) | (comp_len > p.max_chars)):
            side = "short" if comp_len[i] < p.min_chars else "long"
            bound = p.min_chars if side == "short" else p.max_chars
            reasons[i] = (f"too {side}: completion has {comp_len[i]} chars "
                          f"({'min' if side == 'short' else 'max'} {bound})")
        bad_r = think & ((r_len < p.min_reasoning_chars) | (r_len > p.max_reasoning_chars))
        for i in np.flatnonzero(bad_r):
            if reasons[i] is None:
                side = "short" if r_len[i] < p.min_reasoning_chars else "long"
                bound = p.min_reasoning_chars if side == "short" else p.max_reasoning_chars
                reasons[i] = (f"reasoning too {side}: {r_len[i]} chars "
                              f"({'min' if side == 'short' else 'max'} {bound})")
        return Verdicts.from_reasons(reasons)


class RepetitionParams(FilterParams):
    ngram: int = 4
    max_repeated_ratio: float = 0.3
    min_ngrams: int = 10
    """Texts with fewer n-grams are not judged (too short for the ratio to mean anything)."""


def repeated_ngram_ratio(texts: pa.Array | Tokens, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(ratio of repeated word n-grams, n-gram count) per text, via one sort of (row, hash) pairs."""
    sh = ngram_hashes(texts if isinstance(texts, Tokens) else word_tokens(texts), n)
    counts = sh.counts
    rows = sh.row_ids()
    if len(sh.hashes) == 0:
        return np.zeros(len(counts)), counts
    order = np.lexsort((sh.hashes, rows))
    r, h = rows[order], sh.hashes[order]
    new = np.ones(len(h), bool)
    new[1:] = (r[1:] != r[:-1]) | (h[1:] != h[:-1])
    distinct = np.bincount(r[new], minlength=len(counts))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(counts > 0, 1.0 - distinct / np.maximum(counts, 1), 0.0)
    return ratio, counts


@register
class RepetitionFilter(TextStatisticFilter[RepetitionParams], type_name="repetition"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p = self.params
        n = table.num_rows
        text = _col(table, "_completion")
        ratio, counts = repeated_ngram_ratio(ctx.tokens("_completion", table), p.ngram)
        bad = (counts >= p.min_ngrams) & (ratio > p.max_repeated_ratio)
        reasons: list[str | None] = [None] * n
        for i in np.flatnonzero(bad):
            words = (text[int(i)].as_py() or "").lower().split()
            grams = Counter(tuple(words[j:j + p.ngram]) for j in range(len(words) - p.ngram + 1))
            top, cnt = grams.most_common(1)[0]
            reasons[i] = (f"repetition: {ratio[i]:.0%} of word {p.ngram}-grams are repeats (max "
                          f"{p.max_repeated_ratio:.0%}); most repeated {' '.join(top)!r} ×{cnt}")
        return Verdicts(~bad, reasons, 1.0 - ratio)


class LanguageParams(FilterParams):
    min_ascii_letter_ratio: float = 0.9
    min_stopword_ratio: float = 0.05
    min_words: int = 20
    """Texts with fewer words are only checked for script (stopword share is noisy on short answers)."""
    field: str = "_completion"


@register
class LanguageFilter(TextStatisticFilter[LanguageParams], type_name="language"):
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        p = self.params
        n = table.num_rows
        text = pc.replace_substring_regex(pc.fill_null(_col(table, p.field), ""), SID_RE.pattern, " ")
        text = pc.replace_substring_regex(text, r"</?think>", " ")
        letters = pc.utf8_length(pc.replace_substring_regex(text, r"[^\pL]", "")).to_numpy(zero_copy_only=False)
        ascii_letters = pc.utf8_length(pc.replace_substring_regex(text, r"[^A-Za-z]", "")).to_numpy(
            zero_copy_only=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            ascii_ratio = np.where(letters > 0, ascii_letters / np.maximum(letters, 1), 1.0)
        # trimmed: Arrow splits leading/trailing whitespace into empty words, and not even stably (curation.text)
        words = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(
            pc.utf8_lower(pc.replace_substring_regex(text, r"[^\pL\s]", " "))))
        n_words = pc.list_value_length(words).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(words)
        is_stop = pc.is_in(flat, pa.array(sorted(STOPWORDS_EN))).to_numpy(zero_copy_only=False)
        row_of = np.repeat(np.arange(n), n_words)
        stops = np.bincount(row_of[is_stop], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            stop_ratio = np.where(n_words > 0, stops / np.maximum(n_words, 1), 0.0)
        bad_script = (letters > 0) & (ascii_ratio < p.min_ascii_letter_ratio)
        bad_stop = (n_words >= p.min_words) & (stop_ratio < p.min_stopword_ratio)
        reasons: list[str | None] = [None] * n
        for i in np.flatnonzero(bad_script | bad_stop):
            if bad_script[i]:
                reasons[i] = (f"language: only {ascii_ratio[i]:.0%} of letters are Latin ASCII "
                              f"(min {p.min_ascii_letter_ratio:.0%})")
            else:
                reasons[i] = (f"language: {stop_ratio[i]:.1%} English stopwords among {n_words[i]} words "
                              f"(min {p.min_stopword_ratio:.0%})")
        return Verdicts(~(bad_script | bad_stop), reasons, stop_ratio)
