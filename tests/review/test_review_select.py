"""Sample selection for review (no server needed): stratified coverage, the uncertain ordering computed by
hand from the fixture's filter rules, seeded determinism, and the judge-score → rating mapping."""
from __future__ import annotations

import pytest


def test_uncertain_puts_disagreement_and_judge_boundary_first(offline_curated):
    from curation.review.push import select_samples

    ws, dv = offline_curated
    S = lambda i: f"{dv.name}.s{i:03d}"  # noqa: E731
    # 4 filters; judge score i/23 drops i <= 11. uncertainty = min(drops, 4 - drops)/4 + (1 - 2|score - 0.5|)
    #   i=9:  sid + judge drop → 0.5 + 0.783 = 1.283  (highest)
    #   i=11: judge drop → 0.25 + 0.957;  i=12: format drop → 0.25 + 0.957  (tie: 1.207)
    #   i=10: judge drop → 0.25 + 0.870;  i=13: sid drop → 0.25 + 0.870    (tie: 1.120)
    got = select_samples(ws, dv, 5, "uncertain")
    assert got[0] == S(9)
    assert set(got[1:3]) == {S(11), S(12)}
    assert set(got[3:5]) == {S(10), S(13)}


def test_stratified_covers_every_stratum_and_is_seeded(offline_curated):
    from curation.review.push import _allocate, select_samples

    ws, dv = offline_curated
    strata = ws.query(f"SELECT level, task, keep, count(*) FROM read_parquet('{dv.glob}') GROUP BY ALL")
    for size in (len(strata), 10, 17):
        ids = select_samples(ws, dv, size, "stratified", seed=3)
        assert len(ids) == len(set(ids)) == size
        picked = ws.query(f"SELECT DISTINCT level, task, keep FROM read_parquet('{dv.glob}') WHERE sample_id IN "
                          f"({','.join(repr(i) for i in ids)})")
        assert len(picked) == len(strata)
    assert select_samples(ws, dv, 10, "random", seed=1) == select_samples(ws, dv, 10, "random", seed=1)
    assert select_samples(ws, dv, 10, "random", seed=1) != select_samples(ws, dv, 10, "random", seed=2)
    assert len(select_samples(ws, dv, 500, "stratified")) == dv.rows  # more than there is → everything
    assert _allocate([10, 5, 1], 8) == [5, 2, 1] and sum(_allocate([3, 3, 3, 3], 2)) == 2
    with pytest.raises(Exception, match="unknown strategy"):
        select_samples(ws, dv, 5, "best")


@pytest.mark.parametrize("score,rating", [(0.0, 1), (0.5, 3), (1.0, 5), (4.0, 4), (2.4, 2), (9.0, 5), (None, None)])
def test_judge_rating_scales(score, rating):
    from curation.review.push import judge_rating

    assert judge_rating(score) == rating


def test_issue_labels_and_judge_come_from_the_filter_classes(offline_curated):
    """Verdict labels map to filter classes through the curation funnel (label → type), also for a version
    that only has a parent's funnel; a label with no filter class is 'other' and no judge, whatever it says."""
    from curation.review.filter_kinds import FilterKinds, filter_kinds
    from storage.datasets import read_dv, write_version
    from storage.records import CURATED_SCHEMA

    ws, dv = offline_curated
    kinds = filter_kinds(ws, dv)
    labels = ("format", "sid_validity", "leakage", "llm_judge", "human")
    assert [kinds.issue_label(f) for f in labels] == ["format", "hallucinated_item", "leaked_target", "wrong_logic",
                                                      "other"]
    assert [f for f in labels if kinds.is_judge(f)] == ["llm_judge"]

    child = write_version(ws, dv.name, read_dv(dv), step="review_apply", schema=CURATED_SCHEMA,
                          parents=[(dv.name, dv.version)], config={})
    inherited = filter_kinds(ws, child)
    assert inherited.is_judge("llm_judge") and inherited.issue_label("leakage") == "leaked_target"

    bare = FilterKinds()  # no funnel: only labels that are filter type names are known
    assert bare.issue_label("sid_grounding") == "hallucinated_item" and bare.is_judge("judge")
    assert bare.issue_label("my_leak_check") == "other" and not bare.is_judge("llm_judge")
