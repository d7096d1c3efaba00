"""The R3 recommendation prompt used by evaluation (and by the tiny test datasets): a user's chronological
history as `title SID` lines, then the request for the next item, with the `/think` or `/no_think` switch.

It mirrors the synth R3 template's shape (system line, history, switch) so a model SFT-ed on synth samples
sees a familiar prompt at evaluation time.
"""
from __future__ import annotations

from typing import Sequence

SYSTEM = ("You are a recommender. Items are named by semantic IDs like "
          "<|sid_begin|><s_a_1><s_b_2><s_c_3><|sid_end|>. Answer with the semantic ID of the recommended item.")


def render_history(history: Sequence[tuple[str | None, str]]) -> str:
    """[(title, sid), …] oldest first → numbered lines 'k. Title SID'."""
    return "\n".join(f"{i + 1}. {title or '(untitled)'} {sid}" for i, (title, sid) in enumerate(history))


def r3_messages(history: Sequence[tuple[str | None, str]], *, think: bool) -> list[dict[str, str]]:
    """Chat messages (system + user) asking for the next item after `history`."""
    switch = "/think" if think else "/no_think"
    user = (f"The user interacted with these items, oldest first:\n{render_history(history)}\n\n"
            f"Which item will the user interact with next? {switch}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def r0_grounding_messages(title: str, description: str | None) -> list[dict[str, str]]:
    """R0 grounding: describe an item, ask for its SID."""
    text = f'"{title}"' + (f": {description}" if description else "")
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"What is the semantic ID of this item? {text} /no_think"}]
