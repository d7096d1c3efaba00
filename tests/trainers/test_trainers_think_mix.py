"""The thinking / non-thinking mix: honoured when both kinds exist, ignored (all rows used) when a corpus has
only one kind, e.g. an alignment corpus."""
import pyarrow.compute as pc

from storage.datasets import read_dv, resolve, write_version
from trainers.export import to_sft_dataset


def test_think_ratio_mixes_when_both_kinds_exist(tiny_ws):
    dv = resolve(tiny_ws, "r3_curated")
    _, ds = to_sft_dataset(tiny_ws, dv, think_ratio=0.5)
    kept = read_dv(dv).filter(pc.field("keep"))
    n_t = pc.sum(kept["think"]).as_py()
    assert len(ds) == 2 * min(n_t, kept.num_rows - n_t)


def test_think_ratio_is_ignored_for_a_corpus_without_thinking_rows(tiny_ws):
    src = read_dv(resolve(tiny_ws, "r3_curated"))
    only_plain = src.filter(pc.invert(src["think"]))
    dv = write_version(tiny_ws, "plain", only_plain, step="test")
    n_kept = pc.sum(only_plain["keep"]).as_py()
    assert n_kept > 0
    assert len(to_sft_dataset(tiny_ws, dv, think_ratio=0.5)[1]) == n_kept
    assert len(to_sft_dataset(tiny_ws, dv, think_ratio=0.0)[1]) == n_kept
