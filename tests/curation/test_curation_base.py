"""The filter base owns the loop: empty input, the declared row selection, verdict validation, the per-row kind;
the filter context's typed accessors compute catalog artifacts once per chain run; a chain run is recorded
with the right status whatever ends it."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from curation_samples import TITLES, good, sid, write_samples

from curation.base import Filter, FilterContext, RowFilter, RowVerdict, SetFilter, Verdicts, rows_nonempty, rows_where
from curation.chain import run_chain, run_filters
from storage.errors import RecotError
from storage.records import samples_from_pylist
from storage.sid_catalog import SidCatalog


def _table(rows: list[dict]) -> pa.Table:
    return samples_from_pylist(rows)


class _HintOnly(Filter, type_name="test_hint_only", review_label="leaked_target"):
    """Drops every hint-mode row it sees and records what it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[str]] = []
        self.ranks: list[list[float]] = []

    def applies_to(self, table: pa.Table) -> np.ndarray:
        return rows_where(table, "mode", ["hint"])

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        self.seen.append(table.column("sample_id").to_pylist())
        self.ranks.append(ctx.rank_score.tolist())
        n = table.num_rows
        return Verdicts(np.zeros(n, bool), ["hint: dropped"] * n, np.arange(n, dtype=float))


def test_only_declared_rows_are_checked_and_the_others_kept_without_reason_or_score():
    rows = [good("a", 1), good("b", 2, mode="hint"), good("c", 3), good("d", 4, mode="hint")]
    f = _HintOnly()
    ctx = FilterContext(ws=None, rank_score=np.array([0.0, 1.0, 2.0, 3.0]))
    v = f.apply(_table(rows), ctx)
    assert f.seen == [["b", "d"]] and f.ranks == [[1.0, 3.0]]  # the context is sliced like the rows
    assert v.keep.tolist() == [True, False, True, False]
    assert v.reason == [None, "hint: dropped", None, "hint: dropped"]
    assert np.isnan(v.score[[0, 2]]).all() and v.score[[1, 3]].tolist() == [0.0, 1.0]


def test_no_selected_rows_and_empty_input_never_reach_check():
    f = _HintOnly()
    v = f.apply(_table([good("a", 1), good("b", 2)]), FilterContext(ws=None, rank_score=np.zeros(2)))
    assert v.keep.all() and v.reason == [None, None] and f.seen == []
    empty = _table([good("a", 1)]).slice(0, 0)
    assert len(f.apply(empty, FilterContext(ws=None, rank_score=np.zeros(0))).keep) == 0 and f.seen == []


class _Broken(Filter, type_name="test_broken"):
    def __init__(self, result: Verdicts) -> None:
        super().__init__(label="broken_one")
        self.result = result

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        return self.result


def test_verdicts_are_validated_and_the_error_names_the_filter():
    table = _table([good("a", 1), good("b", 2)])
    ctx = FilterContext(ws=None, rank_score=np.zeros(2))
    with pytest.raises(RecotError, match="filter 'broken_one' returned 1 verdicts for 2 samples"):
        _Broken(Verdicts.all_kept(1)).apply(table, ctx)
    with pytest.raises(RecotError, match="filter 'broken_one' returned a reason that is not a string: 3"):
        _Broken(Verdicts(np.ones(2, bool), [None, 3], np.zeros(2))).apply(table, ctx)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="verdict arrays differ in length"):
        Verdicts(np.ones(2, bool), [None], np.zeros(2))


class _AnswerLength(RowFilter, type_name="test_answer_length", columns=("sample_id", "answer")):
    """Per row: drop answers longer than 100 chars; score = length; no score for sample 'c'."""

    batch_rows = 2  # several batches, so order across batches is exercised

    def __init__(self) -> None:
        super().__init__()
        self.rows_seen: list[dict[str, Any]] = []

    def applies_to(self, table: pa.Table) -> np.ndarray:
        return rows_nonempty(table, "answer")

    def check_row(self, row: dict[str, Any]) -> RowVerdict:
        self.rows_seen.append(row)
        n = len(row["answer"])
        return n <= 100, None if n <= 100 else f"long answer: {n} chars", None if row["sample_id"] == "c" else n


def test_row_filter_runs_check_row_over_the_selected_rows_in_order_with_only_its_columns():
    rows = [good("a", 1), good("b", 2), good("c", 3), good("d", 4), good("e", 5)]
    rows[1]["answer"] = "x" * 140
    rows[3]["answer"] = None  # not selected
    f = _AnswerLength()
    v = f.apply(_table(rows), FilterContext(ws=None, rank_score=np.zeros(5)))
    assert [r["sample_id"] for r in f.rows_seen] == ["a", "b", "c", "e"]
    assert all(set(r) == {"sample_id", "answer"} for r in f.rows_seen)
    assert v.keep.tolist() == [True, False, True, True, True]
    assert v.reason[1] == "long answer: 140 chars" and v.reason[3] is None
    assert np.isnan(v.score[[2, 3]]).all() and v.score[1] == 140 and v.score[0] == len(rows[0]["answer"])


def test_filters_are_declared_in_their_class_line():
    from curation.filters.quality import LengthFilter, LengthParams

    assert LengthFilter.Params is LengthParams and isinstance(LengthFilter().params, LengthParams)
    assert (LengthFilter.type_name, LengthFilter.review_label) == ("length", "format")
    assert (_AnswerLength.type_name, _AnswerLength.columns) == ("test_answer_length", ("sample_id", "answer"))
    assert _HintOnly.review_label == "leaked_target" and _HintOnly.only_kept_default is False
    assert _HintOnly.row_local is True

    class Grouped(SetFilter, type_name="test_grouped", rank_weight=0.0):
        def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
            return Verdicts.all_kept(table.num_rows)

    assert Grouped.only_kept_default is True and Grouped.row_local is False and Grouped.rank_weight == 0.0
    assert Grouped.review_label == "other" and Grouped().only_kept is True
    assert Grouped(only_kept=False).only_kept is False


def test_catalog_artifacts_are_loaded_once_per_chain_run(cat_ws, monkeypatch):
    loads: list[int] = []
    real_load = SidCatalog.load.__func__

    def counting_load(cls, ws, version=None):
        loads.append(version)
        return real_load(cls, ws, version)

    monkeypatch.setattr(SidCatalog, "load", classmethod(counting_load))
    ctx = FilterContext(ws=cat_ws, rank_score=np.zeros(0))
    assert ctx.latest_sid_version() == 1
    table = ctx.sid_table([1, 1])
    assert ctx.sid_table(np.array([1])) is table and loads == [1]
    assert dict(zip(table.column("item_id").to_pylist(), table.column("title").to_pylist())) == TITLES
    assert {"the usual suspects", "toy story"} <= ctx.normalized_titles([1]) and len(ctx.normalized_titles([1])) == 12
    prefixes = ctx.sid_prefixes([1])
    codes = sid("6")[len("<|sid_begin|>"):-len("<|sid_end|>")]
    assert (1, codes) in prefixes and (1, codes[:codes.index(">") + 1]) in prefixes and (2, codes) not in prefixes
    assert ctx.item_titles(["6", "1", "6", "nope"]) == {"1": TITLES["1"], "6": TITLES["6"]}
    assert FilterContext(ws=None, rank_score=np.zeros(0)).item_titles(["1"]) == {}
    # a sub-context (row selection) shares the run's cache
    sub = FilterContext(ws=cat_ws, rank_score=np.zeros(3)).subset(np.array([0, 2]))
    assert len(sub.rank_score) == 2
    run_filters(_table([good("a", 1), good("b", 2)]),
                [c for c in _default_filters() if c.type_name in ("sid_grounding", "outcome")], ws=cat_ws)
    assert loads == [1, 1]  # one more load for that whole chain run, shared by its filters


def _default_filters() -> list[Filter]:
    from curation.config import load_chain

    cfg, src = load_chain({"filters": [{"type": "sid_grounding"}, {"type": "outcome"},
                                       {"type": "sid_grounding", "name": "again"}]})
    return cfg.build(src)


def test_verdicts_and_funnel_of_a_chain_with_a_progress_bar(cat_ws):
    rows = [good("a", 1), good("b", 2, item="2", target="1"), good("c", 3, mode="hint")]
    curated, verdicts, funnel = run_filters(_table(rows), [_HintOnly(), *_default_filters()[1:2]], ws=cat_ws,
                                            progress=True)
    assert curated.column("keep").to_pylist() == [True, False, False]
    assert curated.column("rejected_by").to_pylist() == [None, "outcome", "test_hint_only"]
    assert verdicts.num_rows == 3 + 3 and funnel["rejected_by"] == {"test_hint_only": 1, "outcome": 1}
    stage = funnel["filters"][0]
    assert (stage["evaluated"], stage["dropped"], stage["reasons"]) == (3, 1, {"hint": 1})


class _Stop(Filter, type_name="test_stop"):
    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        raise self.exc


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "interrupted"), (ValueError("boom"), "failed")])
def test_chain_run_is_recorded_as_interrupted_or_failed(cat_ws, monkeypatch, exc, status):
    import curation.chain as chain_mod
    from curation.config import ChainConfig

    write_samples(cat_ws, [good("a", 1)])
    monkeypatch.setattr(ChainConfig, "build", lambda self, source="": [_Stop(exc)])
    with pytest.raises(type(exc)):
        chain_mod.run_chain(cat_ws, "samples", "minimal")
    row = cat_ws.query("SELECT status, error, stats FROM runs WHERE kind = 'curate'")
    assert len(row) == 1 and row[0][0] == status and '"input": "samples@v1"' in row[0][2]
    if status == "failed":
        assert row[0][1] == "ValueError: boom"


def test_chain_run_is_recorded_as_done_with_its_stats(cat_ws):
    write_samples(cat_ws, [good("a", 1), good("b", 1)])
    dv = run_chain(cat_ws, "samples", {"filters": [{"type": "exact_dedup"}]}, out="cur")
    status, stats = cat_ws.query("SELECT status, stats FROM runs WHERE kind = 'curate'")[0]
    assert status == "done" and dv.ref in stats and '"rejected_by": {"exact_dedup": 1}' in stats
