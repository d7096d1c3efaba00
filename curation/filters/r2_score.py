"""R2 evolution chains scored against a reference chain: score = 0.5·action-F1 + 0.5·logic-F1.

Matching (documented in docs/curation.md):
- text → tokens: lower-case; SIDs count as one token each; other text split on non-alphanumerics; English
  stopwords dropped;
- similarity of two event fields = token F1 (bag of tokens, as in SQuAD);
- events are matched one-to-one greedily by descending similarity; a pair counts when its similarity is
  ≥ `match_threshold` (default 0.5);
- action-F1 = F1 of matched actions (precision = matches / predicted events, recall = matches / reference
  events); logic-F1 likewise over the `logic` fields, matched independently.
Samples without a reference are kept unscored; an unparsable answer scores 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from curation.base import FilterParams, RowFilter, RowVerdict, register, rows_nonempty, rows_where
from curation.scoring import matched_f1
from storage.answer import extract_json_object


def events_of(obj: Any) -> list[dict[str, Any]] | None:
    """Events from an R2 answer/reference: {"logic_chain": {"events": [...]}}, {"events": [...]} or a list."""
    if isinstance(obj, str):
        obj, _ = extract_json_object(obj)
    if isinstance(obj, dict) and isinstance(obj.get("logic_chain"), dict):
        obj = obj["logic_chain"]
    if isinstance(obj, dict):
        obj = obj.get("events")
    if isinstance(obj, list) and all(isinstance(e, dict) for e in obj):
        return obj
    return None


def r2_chain_score(pred: Any, ref: Any, threshold: float = 0.5) -> tuple[float, float, float]:
    """(score, action-F1, logic-F1) of a predicted chain against a reference chain."""
    pe, re_ = events_of(pred), events_of(ref)
    if re_ is None:
        raise ValueError("reference is not an R2 chain")
    if pe is None:
        return 0.0, 0.0, 0.0
    a = matched_f1([str(e.get("action", "")) for e in pe], [str(e.get("action", "")) for e in re_], threshold)
    lg = matched_f1([str(e.get("logic", "")) for e in pe], [str(e.get("logic", "")) for e in re_], threshold)
    return 0.5 * a + 0.5 * lg, a, lg


class R2ScoreParams(FilterParams):
    levels: list[str] = ["R2"]
    match_threshold: float = 0.5
    min_score: float = 0.0
    """Samples scoring below this are dropped (0 = score only)."""


@register
class R2ScoreFilter(RowFilter[R2ScoreParams], type_name="r2_score", review_label="wrong_logic",
                    columns=("answer", "reference")):
    def applies_to(self, table: pa.Table) -> np.ndarray:
        return rows_where(table, "level", self.params.levels) & rows_nonempty(table, "reference")

    def check_row(self, row: dict[str, Any]) -> RowVerdict:
        p: R2ScoreParams = self.params
        if events_of(row["reference"]) is None:
            return True, None, None  # not a chain: nothing to score against
        s, a, lg = r2_chain_score(row["answer"] or "", row["reference"], p.match_threshold)
        if s >= p.min_score:
            return True, None, s
        return False, (f"low R2 score: {s:.2f} = 0.5·action-F1 {a:.2f} + 0.5·logic-F1 {lg:.2f} "
                       f"(min {p.min_score:.2f})"), s
