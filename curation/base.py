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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, TypeVar, cast, final, get_args

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from curation.text import Tokens, subset_tokens, word_tokens
from storage.errors import NotFound, RecotError
from storage.sid_catalog import SidCatalog, latest_sid_version
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
    def all_kept(cls, n: int, reason: str | None = None) -> Verdicts:
        return cls(np.ones(n, dtype=bool), [reason] * n, np.full(n, np.nan))

    @classmethod
    def from_reasons(cls, reasons: list[str | None], score: np.ndarray | None = None) -> Verdicts:
        """A row is dropped exactly when it has a reason (no score unless given)."""
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        return cls(keep, reasons, np.full(len(reasons), np.nan) if score is None else score)

    def __post_init__(self) -> None:
        self.keep = np.asarray(self.keep, dtype=bool)
        self.score = np.asarray(self.score, dtype=np.float64)
        if not (len(self.keep) == len(self.reason) == len(self.score)):
            raise ValueError(f"verdict arrays differ in length: keep {len(self.keep)}, reason {len(self.reason)}, "
                             f"score {len(self.score)}")

    def validate(self, n: int, who: str) -> Verdicts:
        """Self, once checked to hold `n` verdicts with str-or-None reasons (RecotError names the filter)."""
        if len(self.keep) != n:
            raise RecotError(f"filter {who!r} returned {len(self.keep)} verdicts for {n} samples")
        if self.keep.ndim != 1 or self.score.ndim != 1:
            raise RecotError(f"filter {who!r} returned verdict arrays that are not one-dimensional")
        bad = next((r for r in self.reason if r is not None and not isinstance(r, str)), None)
        if bad is not None:
            raise RecotError(f"filter {who!r} returned a reason that is not a string: {bad!r}")
        return self

    def scatter(self, pos: np.ndarray, n: int) -> Verdicts:
        """These verdicts (for rows `pos`) placed among `n` rows; the others kept with no reason or score."""
        out = Verdicts.all_kept(n)
        out.keep[pos] = self.keep
        out.score[pos] = self.score
        for p, r in zip(pos.tolist(), self.reason):
            out.reason[p] = r
        return out


_VersionKey = tuple[int, ...]


def _version_key(versions: Iterable[int] | np.ndarray) -> _VersionKey:
    return tuple(sorted({int(v) for v in versions}))


@dataclass
class RunCache:
    """What the filters of one chain run compute once and share: SID catalogs and the tables derived from them,
    word tokens, the judge's teacher accounting. Read and filled only through FilterContext's accessors."""

    latest: dict[str, int | None] = field(default_factory=dict)  # 'sid_version' → the workspace's newest
    catalogs: dict[int, SidCatalog] = field(default_factory=dict)
    sid_tables: dict[_VersionKey, pa.Table] = field(default_factory=dict)
    normalized_titles: dict[_VersionKey, frozenset[str]] = field(default_factory=dict)
    sid_prefixes: dict[_VersionKey, frozenset[tuple[int, str]]] = field(default_factory=dict)
    tokens: dict[str, tuple[np.ndarray, Tokens]] = field(default_factory=dict)
    word_hashes: dict[str, tuple[int, bool]] = field(default_factory=dict)  # word_tokens' memo across batches
    teacher_stats: dict[str, Any] = field(default_factory=dict)
    duck: dict[str, duckdb.DuckDBPyConnection] = field(default_factory=dict)  # 'con' → the run's in-memory DuckDB

    def close(self) -> None:
        """Close the run's in-memory DuckDB, if one was opened."""
        if (con := self.duck.pop("con", None)) is not None:
            con.close()

    def for_batch(self) -> RunCache:
        """A view for one record batch of the input: an empty token cache of its own (positions are per batch),
        everything else shared with this cache (every field is a mutable container)."""
        return replace(self, tokens={})


@dataclass
class FilterContext:
    """What a filter may know besides its rows: the workspace (catalog lookups, teacher cache), the rank
    score accumulated by earlier filters (for 'keep the best of each group') and the run id; catalog tables and
    word tokens through typed accessors, computed once per chain run."""

    ws: Workspace | None
    rank_score: np.ndarray                      # per evaluated row: sum of earlier filters' scores
    earlier_scores: dict[str, np.ndarray] = field(default_factory=dict)  # label → per evaluated row (NaN = none)
    run_id: str | None = None
    progress: bool = False
    sid_version: int | None = None              # chain-level override of the samples' own sid_version
    cache: RunCache = field(default_factory=RunCache)  # shared across filters of one chain run
    rows: np.ndarray | None = None              # positions of the evaluated rows in the whole input
    full: pa.Table | None = None                # the whole input (for artifacts computed once, e.g. word tokens)
    source: Callable[[str, np.ndarray], pa.ChunkedArray] | None = None
    """The chain's input, read again: `source(column, positions)` (positions in the whole input, ascending)."""

    def subset(self, pos: np.ndarray) -> FilterContext:
        """The context of rows `pos` (positions among this context's rows); the run cache is shared."""
        return replace(self, rank_score=self.rank_score[pos],
                       earlier_scores={k: v[pos] for k, v in self.earlier_scores.items()},
                       rows=self.rows[pos] if self.rows is not None else None)

    # -- the SID catalog ------------------------------------------------------------------------------------
    def latest_sid_version(self) -> int | None:
        """The workspace's newest SID version (None without a workspace or SIDs)."""
        latest = self.cache.latest
        if "sid_version" not in latest:
            latest["sid_version"] = latest_sid_version(self.ws) if self.ws is not None else None
        return latest["sid_version"]

    def sid_catalog(self, version: int) -> SidCatalog:
        """SID version `version` of the workspace catalog (NotFound without a workspace)."""
        if int(version) not in self.cache.catalogs:
            if self.ws is None:
                raise NotFound("SID checks need a workspace with a SID version")
            self.cache.catalogs[int(version)] = SidCatalog.load(self.ws, int(version))
        return self.cache.catalogs[int(version)]

    def sid_table(self, versions: Iterable[int] | np.ndarray) -> pa.Table:
        """Rows (sid_version, sid, item_id, title) of the given SID versions, for DuckDB joins."""
        from curation.catalog import sid_table

        key = _version_key(versions)
        if key not in self.cache.sid_tables:
            self.cache.sid_tables[key] = sid_table([self.sid_catalog(v) for v in key])
        return self.cache.sid_tables[key]

    def normalized_titles(self, versions: Iterable[int] | np.ndarray) -> frozenset[str]:
        """Every catalog title of the given SID versions, normalized (`curation.catalog.normalize_title`)."""
        from curation.catalog import normalize_title

        key = _version_key(versions)
        if key not in self.cache.normalized_titles:
            titles = self.sid_table(key).column("title").to_pylist()
            self.cache.normalized_titles[key] = frozenset(normalize_title(x) for x in titles if x)
        return self.cache.normalized_titles[key]

    def sid_prefixes(self, versions: Iterable[int] | np.ndarray) -> frozenset[tuple[int, str]]:
        """(version, code tokens) of every proper or full prefix of a catalog SID in the given versions."""
        from curation.catalog import sid_prefix_set

        key = _version_key(versions)
        if key not in self.cache.sid_prefixes:
            self.cache.sid_prefixes[key] = sid_prefix_set(self.sid_table(key))
        return self.cache.sid_prefixes[key]

    def item_titles(self, item_ids: Iterable[str]) -> dict[str, str]:
        """Catalog titles of `item_ids` (items without a title are left out; empty without a workspace)."""
        ids = sorted(set(item_ids))
        if not ids or self.ws is None:
            return {}
        with self.ws.reader() as con:
            con.register("ids", pa.table({"item_id": pa.array(ids, pa.string())}))
            rows = con.execute("SELECT i.item_id, i.title FROM items i JOIN ids USING (item_id)").fetchall()
        return {r[0]: r[1] for r in rows if r[1]}

    # -- text -----------------------------------------------------------------------------------------------
    def tokens(self, field: str, table: pa.Table | None = None) -> Tokens:
        """Word-token hashes of column `field` for the evaluated rows. Cached per chain run and sliced for
        later filters that see a subset of those rows, so exact dedup, near dedup and repetition share the work."""
        if self.rows is None or (self.full is None and table is None):
            if table is None:
                raise ValueError("tokens() needs the filter's table when the context has no full input")
            return word_tokens(table.column(field), self.cache.word_hashes)
        cached = self.cache.tokens.get(field)
        if cached is not None:  # reuse when the requested rows are a subset of the tokenized ones
            rows_c, tok = cached
            pos = np.searchsorted(rows_c, self.rows)
            if len(rows_c) and (pos < len(rows_c)).all() and np.array_equal(rows_c[pos], self.rows):
                return tok if len(pos) == len(rows_c) else subset_tokens(tok, pos)
        if table is not None and field in table.column_names and table.num_rows == len(self.rows):
            col = table.column(field)  # the filter's table holds exactly this context's rows: no second take
        else:
            if self.full is None:
                raise ValueError(f"tokens(): column {field!r} is not in the filter's table")
            col = self.full.column(field)
            if len(self.rows) < self.full.num_rows:
                col = col.take(pa.array(self.rows, pa.int64()))
        tok = word_tokens(col, self.cache.word_hashes)
        self.cache.tokens[field] = (np.asarray(self.rows).copy(), tok)
        return tok

    def column_of(self, field: str, pos: np.ndarray) -> pa.ChunkedArray:
        """Column `field` of the evaluated rows at positions `pos` (ascending), read again from the chain's input:
        a set-level filter that prepared a few bytes per row (`Filter.prepare`) fetches the text of the few rows
        it needs."""
        if self.source is None or self.rows is None:
            raise RecotError("column_of() needs a chain run's context (FilterContext.source)")
        return self.source(field, self.rows[np.asarray(pos, np.int64)])

    # -- compute ------------------------------------------------------------------------------------------
    def sql(self) -> duckdb.DuckDBPyConnection:
        """A cursor of the chain run's in-memory DuckDB, for `with ctx.sql() as con:` (what it registers goes
        with it). A fresh connection costs ~20 ms, a cursor microseconds — it adds up over record batches."""
        if "con" not in self.cache.duck:
            self.cache.duck["con"] = duckdb.connect()
        return self.cache.duck["con"].cursor()

    # -- accounting -----------------------------------------------------------------------------------------
    def record_teacher_stats(self, label: str, stats: Any) -> None:
        """A teacher-backed filter's request accounting, reported in the funnel under its label."""
        self.cache.teacher_stats[label] = stats


def rows_where(table: pa.Table, column: str, values: Iterable[str]) -> npt.NDArray[np.bool_]:
    """Boolean mask: `column` is one of `values` (null → False). For `Filter.applies_to`."""
    hit = pc.is_in(table.column(column), pa.array(list(values), pa.string()))
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)


def rows_nonempty(table: pa.Table, column: str) -> npt.NDArray[np.bool_]:
    """Boolean mask: `column` (a string or list column) is neither null nor empty. For `Filter.applies_to`."""
    col = table.column(column)
    size = pc.list_value_length(col) if pa.types.is_list(col.type) else pc.utf8_length(col)
    return np.asarray(pc.fill_null(pc.greater(size, 0), False).to_numpy(zero_copy_only=False), dtype=bool)


P = TypeVar("P", bound=FilterParams)


class Filter(ABC, Generic[P]):
    """A filter: `apply(table, ctx) -> Verdicts`, one verdict per row of `table`.

    The base owns the loop: empty input, row selection and verdict validation. A filter declares which rows it
    checks once (`applies_to`; the others are kept with no reason and no score) and implements only `check`,
    over the selected rows as one Arrow table. `RowFilter` is the kind for checks that are per row by nature,
    `SetFilter` the kind for checks over the kept samples as a whole.

    A filter is declared in its class line: its parameter model as the type argument, the rest as keywords,
    e.g. `class LengthFilter(Filter[LengthParams], type_name="length", review_label="format")`.

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

    def __init_subclass__(cls, *, type_name: str | None = None, params: type[FilterParams] | None = None,
                          review_label: str | None = None, only_kept: bool | None = None,
                          row_local: bool | None = None, rank_weight: float | None = None, **kw: Any) -> None:
        """Set the class-line declarations; what is not given is inherited (or set as class attributes).
        `params=` names the parameter model of a filter not written as `Filter[ParamsModel]`."""
        super().__init_subclass__(**kw)
        for base in cls.__dict__.get("__orig_bases__", ()):
            args = get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], FilterParams):
                cls.Params = args[0]
        for attr, value in (("type_name", type_name), ("Params", params), ("review_label", review_label),
                            ("only_kept_default", only_kept), ("row_local", row_local),
                            ("rank_weight", rank_weight)):
            if value is not None:
                setattr(cls, attr, value)

    def __init__(self, params: P | None = None, *, label: str | None = None, only_kept: bool | None = None):
        self.params: P = params if params is not None else cast(P, self.Params())
        self.label = label or self.type_name
        self.only_kept = self.only_kept_default if only_kept is None else only_kept

    def reads(self) -> tuple[str, ...] | None:
        """The columns `applies_to` and `check` read, when they are a few (the chain then hands the filter only
        those, so a set-level step over the kept rows does not copy every column); None: any column."""
        return None

    def prepare(self, batch: pa.Table, ctx: FilterContext) -> pa.Table:
        """Set-level filters: the row-local part of `check`, run by the chain on each batch of the rows the filter
        evaluates (columns `reads`); `check` then gets the concatenated results. Returning less than the batch
        (e.g. a 64-bit key per row instead of its text) keeps a chain's memory from growing with the text.
        Default: the batch as it is."""
        return batch

    def applies_to(self, table: pa.Table) -> np.ndarray | None:
        """Boolean mask of the rows this filter checks (`rows_where`, `rows_nonempty`); None: every row."""
        return None

    @abstractmethod
    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        """Verdicts for every row of `table`: the rows `applies_to` selected (never none), with SAMPLE_SCHEMA
        columns plus `_completion` and `_chat`."""

    @final
    def apply(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        """Verdicts for every row of `table`: `check` over the selected rows, validated."""
        n = table.num_rows
        if n == 0:
            return Verdicts.all_kept(0)
        mask = self.applies_to(table)
        if mask is None or bool(np.all(mask)):
            return self.check(table, ctx).validate(n, self.label)
        pos = np.flatnonzero(mask)
        if len(pos) == 0:
            return Verdicts.all_kept(n)
        sub = table.take(pa.array(pos, pa.int64()))
        return self.check(sub, ctx.subset(pos)).validate(len(pos), self.label).scatter(pos, n)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(label={self.label!r}, params={self.params!r})"


class SetFilter(Filter[P]):
    """A filter that sees the still-kept samples as one set, on the driver: deduplication and rejection sampling
    (a row's verdict depends on the other rows; a broken sample must not win its group) and the judge (each
    sample costs a teacher request, and the teacher engine batches, caches and accounts them in one place)."""

    only_kept_default = True
    row_local = False


RowVerdict = tuple[bool, str | None, float | None]


class RowFilter(Filter[P]):
    """A filter whose check is per row by nature (parsing an answer, matching chains): implement
    `check_row(row) -> (keep, reason, score)`, `row` being a dict of the declared `columns`. The base runs it
    over Arrow record batches of the selected rows; a score of None means no score."""

    columns: ClassVar[tuple[str, ...]]
    batch_rows: ClassVar[int] = 16_384

    def __init_subclass__(cls, *, columns: tuple[str, ...] | None = None, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if columns is not None:
            cls.columns = tuple(columns)

    @abstractmethod
    def check_row(self, row: dict[str, Any]) -> RowVerdict:
        """(keep, reason, score) of one row."""

    def check(self, table: pa.Table, ctx: FilterContext) -> Verdicts:
        n = table.num_rows
        keep = np.ones(n, bool)
        reasons: list[str | None] = [None] * n
        score = np.full(n, np.nan)
        names = list(self.columns)
        i = 0
        for batch in table.select(names).to_batches(max_chunksize=self.batch_rows):
            for values in zip(*(col.to_pylist() for col in batch.columns)):
                k, r, s = self.check_row(dict(zip(names, values)))
                keep[i], reasons[i] = k, r
                if s is not None:
                    score[i] = s
                i += 1
        return Verdicts(keep, reasons, score)


_REGISTRY: dict[str, type[Filter[Any]]] = {}
F = TypeVar("F", bound=type[Filter[Any]])


def register(cls: F) -> F:
    """Class decorator: make a filter available to chains under `cls.type_name`."""
    if cls.type_name in _REGISTRY and _REGISTRY[cls.type_name] is not cls:
        raise ValueError(f"filter type {cls.type_name!r} registered twice")
    _REGISTRY[cls.type_name] = cls
    return cls


def registry() -> dict[str, type[Filter[Any]]]:
    import curation.filters  # noqa: F401  (importing registers the built-in filters)

    return dict(_REGISTRY)


def get_filter_class(name: str) -> type[Filter[Any]]:
    reg = registry()
    if name not in reg:
        raise KeyError(name)
    return reg[name]


def reason_category(reason: str | None) -> str:
    """'hallucinated SID: <…> not in …' → 'hallucinated SID'."""
    if not reason:
        return ""
    return reason.split(":", 1)[0].strip()
