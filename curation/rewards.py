"""Correctness of a predicted semantic ID, as numbers. One module shared by curation (outcome filters,
rejection sampling) and trainers (GRPO rewards, RFT filtering, evaluation metrics), because a correct SID is
correct in both places.

Two layers:
- pure scalar functions over SID strings (`prefix_match_levels`, `prefix_partial_reward`, `exact_hit`,
  `hit_at_k`, `recall_at_k`, `ndcg_at_k`) — no model, no I/O, hand-checkable;
- TRL-style reward functions `(prompts, completions, **kwargs) -> list[float]` (`format_reward`,
  `sid_validity_reward`, `exact_hit_reward`, `prefix_partial_sid_reward`, `ndcg_rank_reward`). TRL passes the
  dataset's extra columns as keyword arguments, so a GRPO dataset carries `target_sid` (str) and/or
  `target_sids` (list[str]) and optionally `think` (bool). Completions may be plain strings or chat message
  lists (`[{"role": "assistant", "content": ...}]`, TRL's conversational format); both are handled.

Answer parsing and the format rule come from `storage.answer` (the one home for both): text inside
`<think>…</think>` is reasoning, text after `</think>` is the answer. Only SIDs in the answer count as
predictions — SIDs the model quotes from the history while reasoning are not guesses.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from storage.answer import check_format, reasoning_and_answer
from storage.sid import SidFormatError, extract_sids, find_malformed_sids, format_sid, parse_sid

# SIDReasoner's prefix-partial schedule: 1 level → 0.25, 2 levels → 0.5, the whole SID → 1.0, and a 0.1
# bonus for emitting a valid SID at all (so the policy first learns to speak the SID language).
PREFIX_REWARDS = {1: 0.25, 2: 0.5}
EXACT_REWARD = 1.0
VALIDITY_BONUS = 0.1


# ---------------------------------------------------------------------------------------------------------
# scalar helpers
# ---------------------------------------------------------------------------------------------------------

def _codes(sid: str | None) -> tuple[int, ...] | None:
    """Codes of a well-formed SID, None for anything else (None, '', malformed)."""
    if not sid or not isinstance(sid, str):
        return None
    try:
        return parse_sid(sid)
    except SidFormatError:
        return None


def canonical_sid(sid: str | None) -> str | None:
    """The SID re-formatted from its codes (strips whitespace); None when malformed."""
    codes = _codes(sid)
    return format_sid(codes) if codes is not None else None


def is_valid_prediction(pred_sid: str | None, valid_sids: Collection[str] | None = None) -> bool:
    """Well-formed, and in `valid_sids` (the catalog) when that is given."""
    canon = canonical_sid(pred_sid)
    if canon is None:
        return False
    return valid_sids is None or canon in valid_sids


def prefix_match_levels(pred_sid: str | None, target_sid: str | None) -> int:
    """Number of leading codes that `pred_sid` shares with `target_sid`; 0 when either does not parse.

    >>> prefix_match_levels('<|sid_begin|><s_a_1><s_b_2><s_c_9><|sid_end|>',
    ...                     '<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>')
    2
    """
    p, t = _codes(pred_sid), _codes(target_sid)
    if p is None or t is None:
        return 0
    n = 0
    for a, b in zip(p, t):
        if a != b:
            break
        n += 1
    return n


def prefix_partial_reward(pred_sid: str | None, target_sid: str | None,
                          valid_sids: Collection[str] | None = None) -> float:
    """SIDReasoner's shaped reward: 0.25 / 0.5 / 1.0 for 1 / 2 / all levels matched, +0.1 when the
    prediction is a valid SID (in `valid_sids` when given, else merely well-formed).

    "All levels" means the exact SID (same codes, same length): a 4-level collision SID that shares the first
    3 codes with its 3-level sibling earns the 2-level reward, not the exact one. A malformed prediction
    earns 0.0; a well-formed SID outside the catalog still earns its prefix credit but no validity bonus.
    """
    p, t = _codes(pred_sid), _codes(target_sid)
    if p is None:
        return 0.0
    bonus = VALIDITY_BONUS if is_valid_prediction(pred_sid, valid_sids) else 0.0
    if t is None:
        return bonus
    if p == t:
        return EXACT_REWARD + bonus
    m = prefix_match_levels(pred_sid, target_sid)
    return PREFIX_REWARDS.get(min(m, 2), 0.0) + bonus


def _targets(target: str | Iterable[str] | None) -> list[str]:
    """One target SID or several → canonical, de-duplicated list (malformed targets dropped)."""
    if target is None:
        return []
    items = [target] if isinstance(target, str) else list(target)
    out: list[str] = []
    for t in items:
        c = canonical_sid(t)
        if c is not None and c not in out:
            out.append(c)
    return out


def _ranked(ranked_sids: str | Sequence[str] | None, k: int | None = None) -> list[str | None]:
    """Canonicalize a ranked list; later duplicates are blanked so a repeated SID cannot score twice."""
    if ranked_sids is None:
        return []
    items = [ranked_sids] if isinstance(ranked_sids, str) else list(ranked_sids)
    if k is not None:
        items = items[:k]
    seen: set[str] = set()
    out: list[str | None] = []
    for s in items:
        c = canonical_sid(s)
        if c is None or c in seen:
            out.append(None)
        else:
            seen.add(c)
            out.append(c)
    return out


def exact_hit(pred_sids: str | Sequence[str] | None, target_sid: str | Iterable[str] | None,
              k: int | None = None) -> bool:
    """True when a target SID is among the first `k` predictions (all of them when k is None)."""
    targets = set(_targets(target_sid))
    return any(s in targets for s in _ranked(pred_sids, k) if s is not None)


def hit_at_k(ranked_sids: Sequence[str], target_sid: str | Iterable[str], k: int) -> float:
    """HR@K for one user: 1.0 when any target is in the top k, else 0.0."""
    return 1.0 if exact_hit(ranked_sids, target_sid, k) else 0.0


def recall_at_k(ranked_sids: Sequence[str], target_sids: str | Iterable[str], k: int) -> float:
    """Recall@K: share of the targets found in the top k (= HR@K with a single held-out item)."""
    targets = _targets(target_sids)
    if not targets:
        return 0.0
    top = {s for s in _ranked(ranked_sids, k) if s is not None}
    return sum(1 for t in targets if t in top) / len(targets)


def ndcg_at_k(ranked_sids: Sequence[str], target_sid: str | Iterable[str], k: int) -> float:
    """NDCG@K with binary relevance. With one target at 1-based rank r ≤ k this is 1/log2(r+1) (rank 1 → 1.0,
    rank 2 → 0.631, rank 3 → 0.5); absent → 0.0. With several targets, DCG is divided by the ideal DCG."""
    targets = set(_targets(target_sid))
    if not targets:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, s in enumerate(_ranked(ranked_sids, k)) if s in targets)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(targets), k)))
    return dcg / idcg if idcg else 0.0


# ---------------------------------------------------------------------------------------------------------
# completion parsing
# ---------------------------------------------------------------------------------------------------------

def completion_text(completion: Any) -> str:
    """A completion as text: a string as is; a chat message list → the assistant contents joined."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    parts = []
    for m in completion:
        if isinstance(m, dict):
            if m.get("role", "assistant") == "assistant":
                parts.append(str(m.get("content") or ""))
        else:
            parts.append(str(m))
    return "".join(parts)


def answer_sids(completion: Any) -> list[str]:
    """Well-formed SIDs in the answer part, in order (the model's ranked list)."""
    return extract_sids(reasoning_and_answer(completion_text(completion))[1])


def _per_sample_targets(n: int, target_sid: Any = None, target_sids: Any = None) -> list[list[str]]:
    """Reference SIDs per completion from TRL's column kwargs (`target_sid` str or `target_sids` list)."""
    out: list[list[str]] = [[] for _ in range(n)]
    for col in (target_sid, target_sids):
        if col is None:
            continue
        if isinstance(col, str):  # one reference broadcast to the whole batch
            col = [col] * n
        if len(col) != n:
            raise ValueError(f"reward kwargs: {len(col)} reference values for {n} completions")
        for i, v in enumerate(col):
            for t in _targets(v):
                if t not in out[i]:
                    out[i].append(t)
    return out


def _broadcast(col: Any, n: int) -> list[Any]:
    if col is None or isinstance(col, (bool, str)):
        return [col] * n
    return list(col)


# ---------------------------------------------------------------------------------------------------------
# TRL-style reward functions: (prompts, completions, **kwargs) -> list[float]
# ---------------------------------------------------------------------------------------------------------

def format_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, think: Any = None,
                  **kwargs: Any) -> list[float]:
    """1.0 when the completion has the expected shape, else 0.0.

    Shape: `storage.answer.check_format` (the rule curation's format filter applies: at most one
    `<think>…</think>` block, closed, before a non-empty answer; when the dataset has a `think` column,
    thinking rows must reason and non-thinking rows must not — an empty `<think></think>` is fine, as
    Qwen-style chat templates emit it for /no_think), plus an answer with at least one well-formed SID and no
    malformed SID fragments."""
    thinks = _broadcast(think, len(completions))
    out = []
    for comp, th in zip(completions, thinks):
        text = completion_text(comp)
        ok, _ = check_format(text, th if th is True or th is False else None)
        if ok:
            answer = reasoning_and_answer(text)[1]
            ok = bool(extract_sids(answer)) and not find_malformed_sids(answer)
        out.append(1.0 if ok else 0.0)
    return out


def sid_validity_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *,
                        valid_sids: Collection[str] | None = None, **kwargs: Any) -> list[float]:
    """1.0 when the answer names at least one SID and every SID it names is valid (in `valid_sids` when given,
    else well-formed) with no malformed fragments; else 0.0."""
    out = []
    for comp in completions:
        answer = reasoning_and_answer(completion_text(comp))[1]
        sids = extract_sids(answer)
        ok = bool(sids) and not find_malformed_sids(answer) and all(is_valid_prediction(s, valid_sids) for s in sids)
        out.append(1.0 if ok else 0.0)
    return out


def exact_hit_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, target_sid: Any = None,
                     target_sids: Any = None, **kwargs: Any) -> list[float]:
    """1.0 when the answer's first SID is a reference SID, else 0.0."""
    targets = _per_sample_targets(len(completions), target_sid, target_sids)
    out = []
    for comp, tg in zip(completions, targets):
        sids = answer_sids(comp)
        out.append(1.0 if sids and exact_hit(sids[:1], tg) else 0.0)
    return out


def prefix_partial_sid_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *,
                              target_sid: Any = None, target_sids: Any = None,
                              valid_sids: Collection[str] | None = None, **kwargs: Any) -> list[float]:
    """`prefix_partial_reward` of the answer's first SID against the best-matching reference SID."""
    targets = _per_sample_targets(len(completions), target_sid, target_sids)
    out = []
    for comp, tg in zip(completions, targets):
        sids = answer_sids(comp)
        pred = sids[0] if sids else None
        out.append(max((prefix_partial_reward(pred, t, valid_sids) for t in tg),
                       default=prefix_partial_reward(pred, None, valid_sids)))
    return out


def ndcg_rank_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, target_sid: Any = None,
                     target_sids: Any = None, k: int = 10, miss_penalty: float = 0.0, **kwargs: Any) -> list[float]:
    """Rank-aware reward: NDCG@k of the SIDs the answer lists (in order) against the references — a hit at
    rank r earns 1/log2(r+1), so a correct item pushed down the list is worth less; a miss earns
    `-miss_penalty` (0 by default). MiniOneRec ranks by beam position; GRPO samples have no beam rank, so the
    rank here is the position inside the completion's own ranked answer."""
    targets = _per_sample_targets(len(completions), target_sid, target_sids)
    out = []
    for comp, tg in zip(completions, targets):
        score = ndcg_at_k(answer_sids(comp), tg, k) if tg else 0.0
        out.append(score if score > 0 else -float(miss_penalty))
    return out


def sidreasoner_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, target_sid: Any = None,
                       target_sids: Any = None, think: Any = None, **kwargs: Any) -> list[float]:
    """SIDReasoner's reward schedule as one reward: a completion without `</think>` scores 0; otherwise
    0.25 / 0.5 / 1.0 for 1 / 2 / all levels of the answer's first SID matching the best reference, plus 0.1
    when the completion is well formed (`format_reward`)."""
    targets = _per_sample_targets(len(completions), target_sid, target_sids)
    fmt = format_reward(prompts, completions, think=think)
    out = []
    for comp, tg, ok in zip(completions, targets, fmt):
        text = completion_text(comp)
        if "</think>" not in text:
            out.append(0.0)
            continue
        sids = answer_sids(comp)
        pred = sids[0] if sids else None
        levels = 0.0
        for t in tg:
            p_codes, t_codes = _codes(pred), _codes(t)
            if p_codes is not None and p_codes == t_codes:
                levels = max(levels, EXACT_REWARD)
            elif p_codes is not None:
                levels = max(levels, PREFIX_REWARDS.get(min(prefix_match_levels(pred, t), 2), 0.0))
        out.append(levels + (VALIDITY_BONUS if ok else 0.0))
    return out


def beam_rank_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, target_sid: Any = None,
                     target_sids: Any = None, num_generations: int | None = None, **kwargs: Any) -> list[float]:
    """MiniOneRec's rank reward for rollouts that are the beams of one constrained beam search, in beam order
    (TRL passes a prompt's `num_generations` completions consecutively): a hit earns 1.0; a miss at beam rank r
    earns -(1/log2(r+1)) / Σ_j 1/log2(j+1), so confidently ranked wrong items are penalised most. Without
    `num_generations` every completion counts as rank 1."""
    import math

    targets = _per_sample_targets(len(completions), target_sid, target_sids)
    g = int(num_generations) if num_generations else 1
    norm = sum(1.0 / math.log2(j + 2) for j in range(g))
    out = []
    for i, (comp, tg) in enumerate(zip(completions, targets)):
        sids = answer_sids(comp)
        if sids and exact_hit(sids[:1], tg):
            out.append(1.0)
        else:
            out.append(-(1.0 / math.log2(i % g + 2)) / norm)
    return out


def minionerec_rank_reward(prompts: Sequence[Any] | None, completions: Sequence[Any], *, target_sid: Any = None,
                           target_sids: Any = None, num_generations: int | None = None,
                           **kwargs: Any) -> list[float]:
    """MiniOneRec's `reward_type: ranking` exactly (its `rule_reward` + `ndcg_rule_reward`): a hit earns 1.0;
    the misses of a group earn the normalised rank penalty of `beam_rank` ONLY when the group has a hit — a group
    without one gets 0 everywhere (no signal, rather than pushing all beams down). `beam_rank` differs on purpose:
    it penalises a hit-less group's misses too, which gives an untrained model a gradient (its groups almost
    never hit) at the cost of MiniOneRec's "no hit, no update". Completions are in beam order, in groups of
    `num_generations` (required: without groups there is no rank)."""
    if not num_generations:
        raise ValueError("minionerec_rank needs num_generations (completions in groups of beams, in beam order)")
    g = int(num_generations)
    ranked = beam_rank_reward(prompts, completions, target_sid=target_sid, target_sids=target_sids,
                              num_generations=g)
    out: list[float] = []
    for start in range(0, len(ranked), g):
        group = ranked[start:start + g]
        out.extend(group if 1.0 in group else [0.0] * len(group))
    return out


REWARD_FUNCS: dict[str, Callable[..., list[float]]] = {
    "format": format_reward,
    "sid_validity": sid_validity_reward,
    "exact_hit": exact_hit_reward,
    "prefix_partial": prefix_partial_sid_reward,
    "ndcg_rank": ndcg_rank_reward,
    "sidreasoner": sidreasoner_reward,       # SIDReasoner's schedule in one reward (needs </think>)
    "beam_rank": beam_rank_reward,           # rank reward over beams (completions in beam order)
    "minionerec_rank": minionerec_rank_reward,  # MiniOneRec's exactly: hit-less groups get 0
}


def bind_rewards(names: Sequence[str], *, valid_sids: Collection[str] | None = None,
                 **options: Any) -> list[Callable[..., list[float]]]:
    """Reward functions by name with the catalog (and options such as `k`) bound, keeping a readable
    `__name__` because TRL logs each reward under its function name."""
    unknown = [n for n in names if n not in REWARD_FUNCS]
    if unknown:
        raise KeyError(f"unknown reward(s) {unknown}; known: {sorted(REWARD_FUNCS)}")
    bound = []
    for name in names:
        fn = REWARD_FUNCS[name]

        def reward(prompts: Sequence[Any] | None, completions: Sequence[Any],
                   _fn: Callable[..., list[float]] = fn, **kwargs: Any) -> list[float]:
            kw = {**options, **kwargs}
            if valid_sids is not None:
                kw["valid_sids"] = valid_sids
            return _fn(prompts, completions, **kw)

        reward.__name__ = fn.__name__
        reward.__doc__ = fn.__doc__
        bound.append(reward)
    return bound
