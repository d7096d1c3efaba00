"""Curation test helpers: a small catalog (items + one SID version) and a sample builder whose rows carry known
defects. Built directly with SQL so the tests do not depend on the MovieLens ingest or the SID builder."""
from __future__ import annotations

import json
import random
from datetime import UTC, datetime

from storage.answer import reasoning_and_answer
from storage.datasets import write_version
from storage.records import SAMPLE_SCHEMA, samples_from_pylist
from storage.sid import extract_sids, format_sid

TITLES = {
    "1": "Toy Story (1995)", "2": "GoldenEye (1995)", "3": "Four Rooms (1995)", "4": "Get Shorty (1995)",
    "5": "Copycat (1995)", "6": "Usual Suspects, The (1995)", "7": "Twelve Monkeys (1995)", "8": "Babe (1995)",
    "9": "Dead Man Walking (1995)", "10": "Richard III (1995)", "11": "Seven (Se7en) (1995)",
    "12": "Jumanji (1995)",
}
CODES = {iid: (int(iid) % 4, (int(iid) * 7) % 16, int(iid)) for iid in TITLES}


def sid(item_id: str) -> str:
    return format_sid(CODES[item_id])


HALLUCINATED = format_sid((3, 15, 99))  # parses, but no item has it

_SUBJ = ["The user", "This viewer", "The person", "Our user", "The member", "This customer"]
_VERB = ["watched", "rated highly", "returned to", "enjoyed", "finished", "sought out", "praised", "revisited"]
_ADJ = ["gritty", "playful", "slow", "tense", "warm", "dark", "clever", "quiet", "bold", "odd", "tender", "sharp"]
_NOUN = ["thrillers", "comedies", "dramas", "mysteries", "cartoons", "crime stories", "period pieces",
         "heist films", "family films", "war films", "satires", "romances"]
_WHEN = ["last spring", "over the summer", "in recent weeks", "early on", "during the holidays", "lately",
         "in the winter", "after a break", "on weekends", "at night"]
_LINK = ["which suggests", "so it seems there is", "and this points to", "which hints at", "showing",
         "and that reveals"]
_TASTE = ["a taste for", "a steady interest in", "a growing pull toward", "curiosity about", "a fondness for",
          "an appetite for"]


def reasoning_text(seed: int, sentences: int = 7) -> str:
    """Varied, natural-looking English so language/repetition filters pass and different seeds do not
    near-duplicate each other."""
    rng = random.Random(seed)
    out = []
    for _ in range(sentences):
        out.append(f"{rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_ADJ)} {rng.choice(_NOUN)} "
                   f"{rng.choice(_WHEN)}, {rng.choice(_LINK)} {rng.choice(_TASTE)} {rng.choice(_ADJ)} "
                   f"{rng.choice(_NOUN)} from {1970 + rng.randrange(30)}.")
    return " ".join(out)


def make_sample(key: str, completion: str, *, target: str | None = "1", think: bool = True, mode: str = "blind",
                level: str = "R3", task: str = "r3_recommend", prompt_id: str | None = None,
                error: str | None = None, reference: dict | None = None, sid_version: int = 1) -> dict:
    reasoning, answer = reasoning_and_answer(completion)
    return {
        "sample_id": key, "prompt_id": prompt_id or f"p-{key}", "task": task, "level": level, "mode": mode,
        "think": think, "domain": "movies", "user_id": "u1", "history_item_ids": ["2", "3"],
        "target_item_ids": [target] if target else [], "target_sids": [sid(target)] if target else [],
        "messages": [{"role": "user", "content": f"History: {TITLES['2']} {sid('2')}. Recommend the next movie."},
                     {"role": "assistant", "content": completion}],
        "reasoning": reasoning, "answer": answer, "answer_sids": extract_sids(answer),
        "reference": json.dumps(reference) if reference is not None else None, "extra": None,
        "teacher": "test:model", "template_version": "t@1", "request_key": None, "run_id": "r1",
        "sid_version": sid_version, "error": error,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def good(key: str, seed: int, item: str = "1", **kw) -> dict:
    """A clean sample recommending `item` (correct when target == item)."""
    comp = f"<think>{reasoning_text(seed)}</think>\nI recommend {sid(item)} ({TITLES[item]})."
    return make_sample(key, comp, target=kw.pop("target", item), **kw)


def build_catalog(ws) -> None:
    with ws.transaction("test") as con:
        for iid, title in TITLES.items():
            con.execute("INSERT INTO items (item_id, title, domain) VALUES (?, ?, 'movies')", [iid, title])
            con.execute("INSERT INTO item_sids VALUES (1, ?, ?, ?)", [iid, list(CODES[iid]), sid(iid)])
        con.execute("INSERT INTO sid_versions VALUES (1, now(), 3, 256, ?, '{}', '{}')", [len(TITLES)])


def write_samples(ws, rows: list[dict], name: str = "samples"):
    return write_version(ws, name, samples_from_pylist(rows), step="test", schema=SAMPLE_SCHEMA)


