"""Building blocks: vectorized tokens/shingles agree with a plain Python reference, config errors are
actionable, bad input names the row, the funnel can be rebuilt from the verdicts table."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from curation_samples import good

from curation.chain import run_filters
from curation.config import load_chain
from curation.report import funnel
from curation.text import ngram_hashes, normalize_token, subset_tokens, text_keys, word_tokens
from storage.datasets import write_version
from storage.errors import ConfigError, InputError
from storage.records import CURATED_SCHEMA, samples_from_pylist


def test_word_tokens_and_shingles_match_python_reference():
    texts = ["The user, watched  Heat.", "the USER watched heat", "", None, "one two", "a b c d e f g"]
    tok = word_tokens(pa.array(texts))
    assert list(tok.counts) == [len([w for w in (normalize_token(x) for x in (t or "").lower().split()) if w])
                                for t in texts]
    keys = text_keys(tok)
    assert keys[0] == keys[1] and keys[0] != keys[4] and keys[2] == keys[3] == 0
    sh = ngram_hashes(tok, 5)
    # a-g: 3 windows; 'one two' (shorter than 5): one shingle; empty: none
    assert list(sh.counts) == [1, 1, 0, 0, 1, 3]
    sub = subset_tokens(tok, np.array([5, 0]))
    assert list(sub.counts) == [7, 4] and np.array_equal(sub.hashes[:7], tok.hashes[tok.offsets[5]:tok.offsets[6]])
    # shingles are order-sensitive
    rev = ngram_hashes(word_tokens(pa.array(["g f e d c b a"])), 5)
    assert not set(rev.hashes) & set(sh.hashes[sh.offsets[5]:])


def test_word_tokens_ascii_fast_path_splits_like_the_utf8_kernels():
    """All-ASCII columns take the ASCII kernels: every ASCII character (incl. the separators \\x1c-\\x1f that
    only the UTF-8 splitter splits on) must give the same tokens as the UTF-8 path."""
    import pyarrow.compute as pc

    from curation.text import _split_lower

    texts = [f"Ab{chr(c)}Cd e" for c in range(128)] + ["".join(chr(c) for c in range(128)), "", "x\x1fY"]
    texts += [f"{chr(c)}lead and trail{chr(c) * 3}" for c in range(128)]
    ref = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pc.utf8_lower(pa.array(texts))))
    assert _split_lower(pa.array(texts)).to_pylist() == ref.to_pylist()
    mixed = texts + ["Ünï\u00a0code"]  # one non-ASCII text: the UTF-8 path for the whole column
    assert word_tokens(pa.array(mixed)).counts[-1] == 2
    assert np.array_equal(word_tokens(pa.array(texts)).hashes, word_tokens(pa.array(mixed)).hashes[:-2])


def test_leading_and_trailing_whitespace_make_no_words():
    """Arrow splits leading/trailing whitespace into empty words (and a trailing run not even stably): the
    tokens and the language filter's word count ignore it."""
    from curation.base import FilterContext
    from curation.filters.quality import LanguageFilter

    plain = "the user watched a film and the user liked it so the next one is this"
    padded = ["  " + plain + "         ", "\n" + plain + " \t ", plain + "\u00a0\u00a0 "]
    for t in padded:
        assert np.array_equal(word_tokens(pa.array([t])).hashes, word_tokens(pa.array([plain])).hashes), repr(t)
    table = pa.table({"_completion": [plain, *padded]})
    v = LanguageFilter().apply(table, FilterContext(ws=None, rank_score=np.zeros(4)))
    assert len(set(v.score.tolist())) == 1


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown type 'nope'.*known types: .*near_dedup"):
        load_chain({"filters": [{"type": "nope"}]})[0].build()
    with pytest.raises(ConfigError, match="used twice"):
        load_chain({"filters": [{"type": "format"}, {"type": "format"}]})
    with pytest.raises(ConfigError, match="not found"):
        load_chain("no-such-chain")
    with pytest.raises(ConfigError, match="expected FILTER.PARAM=VALUE"):
        load_chain("minimal", ["threshold"])


def test_duplicate_sample_ids_are_rejected_with_the_row(cat_ws):
    rows = [good("a", 1), good("b", 2), good("a", 3)]
    cfg, src = load_chain("minimal")
    with pytest.raises(InputError, match="line 2, field 'sample_id': duplicate or missing sample_id 'a'"):
        run_filters(samples_from_pylist(rows), cfg.build(src), ws=cat_ws)


def test_funnel_rebuilt_from_verdicts_when_manifest_has_none(cat_ws):
    rows = [good("a", 1), good("b", 1), good("c", 2, item="2", target="1")]
    cfg, src = load_chain({"filters": [{"type": "outcome"}, {"type": "exact_dedup"}]})
    curated, verdicts, _ = run_filters(samples_from_pylist(rows), cfg.build(src), ws=cat_ws)
    dv = write_version(cat_ws, "hand-curated", curated, step="test", schema=CURATED_SCHEMA)
    with cat_ws.transaction() as con:
        con.register("v", verdicts)
        con.execute("INSERT INTO verdicts "
                    "SELECT 'hand-curated', 1, sample_id, filter, keep, reason, score, NULL FROM v")
    rep = funnel(cat_ws, dv.ref)
    assert rep["rebuilt"] and rep["kept"] == 1 and rep["rejected_by"] == {"outcome": 1, "exact_dedup": 1}
    by_name = {s["name"]: s for s in rep["filters"]}
    assert by_name["outcome"]["reasons"] == {"wrong answer": 1} and by_name["exact_dedup"]["evaluated"] == 2
