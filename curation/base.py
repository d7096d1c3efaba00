"""What a filter is: a small step over an Arrow table that returns one verdict per sample.

The shape follows datatrove (one method per filter, a reason on every drop, execution kept out of the
filter) but a filter sees a whole Arrow table and answers with arrays, so checks run as Arrow/DuckDB/numpy
kernels instead of a Python call per document.

Reasons are written `"<category>: <detail>"` (e.g. `"hallucinated SID: <|sid_begin|>…<|sid_end|> not in SID
version 1"`). The funnel report groups by the category (the text before the first colon) and shows the
details as examples, so the histogram stays small while every sample keeps its specific reason.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from storage.workspace import Workspace

log = logging.getLogger(__name__)


class FilterParams(BaseModel):
    """Base of every filter's typed parameters: unknown keys are an error (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class Verdicts:
    """Per-row verdicts for the rows a filter evaluated: `keep` (bool), `reason` (str or None), `score`
    (float, NaN = no score)."""

    keep: np.ndarray
    reason: list[str | None]
    score: np.ndarray

    @classmethod
    def all_kept(cls, n: int, reason: str | None = None) -> "Verdicts":
        return cls(np.ones(n, dtype=bool), [reason] * n, np.full(n, np.nan))

    def __post_init__(self) -> None:
        self.keep = np.asarray(self.keep, dtype=bool)
        self.score = np.asarray(self.score, dtype=np.float64)
        if not (len(self.keep) == len(self.reason) == len(self.score)):
            raise ValueError(f"verdict arrays differ in length: keep {len(self.keep)}, reason {len(self.reason)}, "
                             f"score {len(self.score)}")


@dataclass
class FilterContext:
    """What a filter may know besides its rows: the workspace (catalog lookups, teacher cache), the rank
    score accumulated by earlier filters (for 'keep the best of each group') and the run id."""

    ws: Workspace | None
    rank_score: np.ndarray                      # per evaluated row: sum of earlier filters' scores
    earlier_scores: dict[str, np.ndarray] = field(default_factory=dict)  # label → per evaluated row (NaN = none)
    run_id: str | None = None
    progress: bool = False
    sid_version: int | None = None              # chain-level override of the samples' own sid_version
    cache: dict[str, Any] = field(default_factory=dict)  # shared across filters of one chain run (catalogs)
    rows: np.ndarray | None = None              # positions of the evaluated rows in the whole input
    full: pa.Table | None = None                # the whole input (for artifacts computed once, e.g. word tokens)

    def tokens(self, field: str, table: pa.Table | None = None):
        """Word-token hashes of column `field` for the evaluated rows. Cached per chain run and sliced for
        later filters that see a subset of those rows, so exact dedup, near dedup and repetition share the work."""
        from curation.text import subset_tokens, word_tokens

        if self.full is None or self.rows is None:
            if table is None:
                raise ValueError("tokens() needs the filter's table when the context has no full input")
            return word_tokens(table.column(field))
        key = f"tokens:{field}"
        cached = self.cache.get(key)
        if cached is not None:  # reuse when the requested rows are a subset of the tokenized ones
            rows_c, tok = cached
            pos = np.searchsorted(rows_c, self.rows)
            if len(rows_c) and (pos < len(rows_c)).all() and np.array_equal(rows_c[pos], self.rows):
                return tok if len(pos) == len(rows_c) else subset_tokens(tok, pos)
        col = self.full.column(field)
        if len(self.rows) < self.full.num_rows:
            col = col.take(pa.array(self.rows, pa.int64()))
        tok = word_tokens(col)
        self.cache[key] = (np.asarray(self.rows).copy(), tok)
        return tok


class Filter(ABC):
    """A filter: `apply(table, ctx) -> Verdicts`, one verdict per row of `table`.

    `only_kept` (default per class): evaluate only samples that are still kept. Set-level filters
    (deduplication, rejection sampling) and expensive ones (the judge) default to True — a broken sample
    must not win its duplicate group, and the judge should not pay for samples already dropped. Cheap row
    checks default to False so their verdicts (and agreement statistics) cover every sample."""

    type_name: ClassVar[str]
    Params: ClassVar[type[FilterParams]] = FilterParams
    only_kept_default: ClassVar[bool] = False
    row_local: ClassVar[bool] = True
    """True when a row's verdict depends on that row alone (and the catalog): such filters may run on batches
    in parallel (`--executor ray`). Set-level filters (dedup, rejection sampling, the judge) set False."""
    rank_weight: ClassVar[float] = 1.0
    """Weight of this filter's score in the rank score later filters use to pick the best of a group
    (0 for text-statistics scores that say nothing about correctness or usefulness)."""
    review_label: ClassVar[str] = "other"
    """The human-review issue label a drop by this filter stands for (curation.review.push ISSUE_LABELS:
    'hallucinated_item', 'leaked_target', 'wrong_logic', 'format', 'other')."""

    def __init__(self, params: FilterParams | None = None, *, label: str | None = None,
                 only_kept: bool | None = None):
        self.params = params if params is not None else self.Params()
        self.label = label or self.type_name
        self.only_kept = self.only_kept_default if only_kept is None else only_kept

    @abstractmethod
    def apply(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        """Verdicts for every row of `table` (rows carry SAMPLE_SCHEMA columns plus `_completion`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, params={self.params!r})"


_REGISTRY: dict[str, type[Filter]] = {}


def register(cls: type[Filter]) -> type[Filter]:
    """Class decorator: make a filter available to chains under `cls.type_name`."""
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"filter type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def registry() -> dict[str, type[Filter]]:
    import curation.filters  # noqa: F401  (importing registers the built-in filters)

    return dict(_REGISTRY)


def get_filter_class(name: str) -> type[Filter]:
    reg = registry()
    if name not in reg:
        raise KeyError(name)
    return reg[name]


def reason_category(reason: str | None) -> str:
    """'hallucinated SID: <…> not in …' → 'hallucinated SID'."""
    if not reason:
        return ""
    return reason.split(":", 1)[0].strip()
