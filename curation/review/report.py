"""How well do the automatic filters and the LLM judge agree with the annotators?

The human decision on a sample comes from its *submitted* reviews (discarded ones mean "could not
judge"): a review says *bad* when the answer was marked incorrect or rated 1–2; the sample's decision
is the majority of its annotators, a tie counting as bad (when people disagree the trace is not one to
train on blindly). Each filter's verdicts on the reviewed samples are then compared with those decisions:
Cohen's kappa (keep/drop vs keep/drop), and precision / recall of the filter's *drops* against the human
'bad' decisions. The judge (the label whose filter class is the judge, see filter_kinds) also gets a
quadratic-weighted kappa of its 1–5 rating vs the annotators' mean rating. `curation` is the dataset's
final keep column (all filters together).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from curation.review.filter_kinds import filter_kinds
from curation.review.push import judge_rating
from storage.datasets import DatasetVersion, resolve
from storage.errors import NotFound
from storage.workspace import Workspace


@dataclass
class HumanDecision:
    sample_id: str
    keep: bool
    n_reviews: int
    n_bad: int
    annotators: list[str]
    mean_rating: float | None
    reason: str


def _is_bad(correct: str | None, rating: int | None) -> bool:
    return correct == "no" or (rating is not None and rating <= 2)


def human_decisions(ws: Workspace, sample_ids: list[str] | None = None) -> dict[str, HumanDecision]:
    """Majority decision per reviewed sample (submitted reviews only)."""
    rows = ws.query("""
        SELECT sample_id, annotator, correct, rating, labels, corrected_answer
        FROM reviews WHERE status = 'submitted' ORDER BY sample_id, annotator""")
    wanted = set(sample_ids) if sample_ids is not None else None
    by_sample: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        if wanted is None or r[0] in wanted:
            by_sample.setdefault(r[0], []).append(r)
    out = {}
    for sid, rs in by_sample.items():
        bad = [r for r in rs if _is_bad(r[2], r[3])]
        keep = 2 * len(bad) < len(rs)
        ratings = [r[3] for r in rs if r[3] is not None]
        parts = []
        for _, ann, correct, rating, labels, corrected in (bad if not keep else rs):
            bits = [f"correct={correct}" if correct else None, f"rating={rating}" if rating is not None else None,
                    f"issues={','.join(labels)}" if labels else None,
                    "corrected answer given" if corrected else None]
            parts.append(f"{ann}: " + "; ".join(b for b in bits if b))
        out[sid] = HumanDecision(sample_id=sid, keep=keep, n_reviews=len(rs), n_bad=len(bad),
                                 annotators=sorted({r[1] for r in rs}),
                                 mean_rating=sum(ratings) / len(ratings) if ratings else None,
                                 reason=" | ".join(parts))
    return out


@dataclass
class Agreement:
    name: str
    kind: str                 # filter | judge | curation
    n: int                    # reviewed samples this source has a verdict on
    kappa: float | None       # Cohen's kappa keep/drop vs human; None when undefined (one class only)
    precision: float | None   # of its drops, the share humans also found bad
    recall: float | None      # of the human 'bad' samples, the share it dropped
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    rating_kappa: float | None = None  # judge only: quadratic-weighted kappa of 1–5 ratings


@dataclass
class ReviewReport:
    dataset: str
    reviewed: int
    human_bad: int
    annotators: list[str]
    rows: list[Agreement] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kappa(a: list[Any], b: list[Any], **kw: Any) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = cohen_kappa_score(a, b, **kw)
    return None if k is None or math.isnan(k) else float(k)


def _agreement(name: str, kind: str, pairs: list[tuple[bool, bool]]) -> Agreement:
    """pairs: (source_keep, human_keep)."""
    tp = sum(1 for s, h in pairs if not s and not h)
    fp = sum(1 for s, h in pairs if not s and h)
    fn = sum(1 for s, h in pairs if s and not h)
    tn = sum(1 for s, h in pairs if s and h)
    return Agreement(name=name, kind=kind, n=len(pairs),
                     kappa=_kappa([int(s) for s, _ in pairs], [int(h) for _, h in pairs]),
                     precision=tp / (tp + fp) if tp + fp else None, recall=tp / (tp + fn) if tp + fn else None,
                     tp=tp, fp=fp, fn=fn, tn=tn)


def _judge_rating_kappa(vs: list[tuple[Any, ...]], decisions: dict[str, HumanDecision]) -> float | None:
    """Quadratic-weighted kappa of the judge's 1–5 rating vs the annotators' mean rating (rounded)."""
    rated = [(judge_rating(score), mean) for s, _, score in vs
             if judge_rating(score) is not None and (mean := decisions[s].mean_rating) is not None]
    if not rated:
        return None
    return _kappa([j for j, _ in rated], [int(round(h)) for _, h in rated], labels=[1, 2, 3, 4, 5],
                  weights="quadratic")


def agreement(ws: Workspace, dataset_ref: str) -> ReviewReport:
    """Agreement of every filter, the judge and the final curation decision with the annotators, on the
    reviewed samples of curated version `dataset_ref`."""
    import duckdb

    dv: DatasetVersion = resolve(ws, dataset_ref)
    con = duckdb.connect()
    try:
        keep = dict(con.execute(f"SELECT sample_id, keep FROM {dv.sql}").fetchall())
    finally:
        con.close()
    decisions = human_decisions(ws, list(keep))
    if not decisions:
        raise NotFound(f"no submitted reviews for samples of {dv.ref}; annotate in Argilla, then "
                       "`recot review pull`")
    verdicts = ws.query("SELECT sample_id, filter, keep, score FROM verdicts WHERE dataset = ? AND version = ? "
                        "ORDER BY filter, sample_id", [dv.name, dv.version])
    by_filter: dict[str, list[tuple[Any, ...]]] = {}
    for sid, f, k, score in verdicts:
        if sid in decisions:
            by_filter.setdefault(f, []).append((sid, bool(k), score))
    rep = ReviewReport(dataset=dv.ref, reviewed=len(decisions),
                       human_bad=sum(1 for d in decisions.values() if not d.keep),
                       annotators=sorted({a for d in decisions.values() for a in d.annotators}))
    kinds = filter_kinds(ws, dv)
    for f, vs in sorted(by_filter.items()):
        judge = kinds.is_judge(f)
        row = _agreement(f, "judge" if judge else "filter", [(k, decisions[s].keep) for s, k, _ in vs])
        if judge:
            row.rating_kappa = _judge_rating_kappa(vs, decisions)
        rep.rows.append(row)
    pairs = [(bool(keep[s]), d.keep) for s, d in decisions.items() if keep.get(s) is not None]
    rep.rows.append(_agreement("curation", "curation", pairs))
    return rep
