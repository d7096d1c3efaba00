"""What a teacher costs: prices, token estimates before a run, and the budget that stops one.

- **Prices** (`teacher_prices`): the config's typed `price_per_1m_prompt` / `price_per_1m_completion` when
  given (they override), else the maintained price table of the `genai-prices` package (pydantic's table of
  hosted providers' prices, bundled in the package, no network) for a well-known hosted model: `gpt-4o-mini`
  on api.openai.com, `deepseek-reasoner` on api.deepseek.com, ... A local server (base_url on 127.0.0.1 or
  any URL the table does not know) has no price: its cost is `None`, not 0, so nobody mistakes "unknown" for
  "free".
- **Estimates** (`estimate_requests`, used by `recot synth run --dry-run`): prompt tokens counted with the
  model's tokenizer when one is available locally (`config.tokenizer`, else the model name, offline only; the
  embedded model's own tokenizer for backend local), else `estimate_tokens` (documented below); completion
  tokens = the mean this teacher's completions used in the cache for the same prompt template when there are
  any, else the request's whole budget (`max_tokens × n`: an upper bound). Requests already in the cache cost
  nothing and are counted apart.
- **Budget** (`max_cost_usd`): the engine stops sending once a run's fresh spending reaches it (see
  engine.py); answers already paid for are in the cache, so re-running continues where it stopped.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any

from storage.errors import RecotError
from synth.teacher.config import TeacherConfig
from synth.teacher.types import ChatRequest

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0
"""Plain text: ~4 characters per token (the usual BPE rule of thumb for English)."""
TOKENS_PER_SID_PART = 7.0
"""A semantic-ID tag like `<s_a_12>` or `<|sid_begin|>` is not in a teacher's vocabulary: BPE splits each
into ~7 pieces (`<`, `s`, `_`, `a`, `_`, one token per digit as Llama-3/Qwen/SmolLM tokenizers split
numbers, `>`), about twice what its characters / 4 suggest (measured: 7-9 with SmolLM2's tokenizer)."""
CHAT_OVERHEAD_TOKENS = 5
"""Per message: the chat template's role header and end marker."""
_SID_PART = re.compile(r"<\|?[a-z_0-9]+\|?>")


@dataclass(frozen=True)
class Prices:
    prompt_per_1m: float
    completion_per_1m: float
    source: str                # "config" or "genai-prices:<provider>/<model>"

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        return prompt_tokens / 1e6 * self.prompt_per_1m + completion_tokens / 1e6 * self.completion_per_1m


def teacher_prices(config: TeacherConfig) -> Prices | None:
    """The teacher's prices: typed in the config, else genai-prices' table (hosted models only), else None."""
    if config.price_per_1m_prompt is not None or config.price_per_1m_completion is not None:
        return Prices(config.price_per_1m_prompt or 0.0, config.price_per_1m_completion or 0.0, "config")
    if config.backend != "openai":
        return None                          # local / vllm / skeleton run on your own hardware
    try:
        from genai_prices import Usage, calc_price
    except ImportError:                      # pragma: no cover - a declared dependency
        return None
    url = config.base_url or "https://api.openai.com/v1"
    try:
        # per 1k tokens, scaled: a 1M-token usage would land in long-context price tiers
        calc = calc_price(Usage(input_tokens=1000, output_tokens=1000), config.model, provider_api_url=url)
    except (LookupError, ValueError) as exc:
        log.debug("no genai-prices price for %s at %s: %s", config.model, url, exc)
        return None
    return Prices(float(calc.input_price) * 1000, float(calc.output_price) * 1000,
                  f"genai-prices:{calc.provider.id}/{calc.model.id}")


# ---------------------------------------------------------------------------------------------- tokens
def estimate_tokens(text: str) -> int:
    """Tokens of `text` without a tokenizer: each SID tag counts TOKENS_PER_SID_PART, the rest
    CHARS_PER_TOKEN characters per token."""
    parts = _SID_PART.findall(text)
    rest = len(_SID_PART.sub("", text))
    return int(math.ceil(len(parts) * TOKENS_PER_SID_PART + rest / CHARS_PER_TOKEN))


def load_tokenizer(config: TeacherConfig) -> Any | None:
    """The teacher's tokenizer if it is available on this machine (never downloaded), else None."""
    name = config.tokenizer
    if name is None:
        if config.backend == "local":
            from synth.teacher.local_model import ensure_local_model

            name = config.local_model_path or str(ensure_local_model())
        elif config.backend in ("openai", "vllm"):
            name = config.model
        else:
            return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 — any failure means "no tokenizer here": fall back to the estimate
        log.debug("no local tokenizer %r: %s", name, exc)
        return None


def prompt_tokens(request: ChatRequest, tokenizer: Any | None) -> int:
    """Prompt tokens of one request: the tokenizer's chat template when there is one, else the estimate."""
    msgs = request.message_dicts()
    if tokenizer is not None:
        try:
            ids = tokenizer.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return len(ids)
        except Exception:  # noqa: BLE001 — no chat template: count the text
            return sum(len(tokenizer.encode(m["content"])) + CHAT_OVERHEAD_TOKENS for m in msgs)
    return sum(estimate_tokens(m["content"]) + CHAT_OVERHEAD_TOKENS for m in msgs)


def observed_completion_mean(cache: Any, teacher_id: str, template_version: str) -> tuple[float, int] | None:
    """(mean completion tokens per request, requests seen) over this teacher's successful cached answers for
    this template version, or None when there are none."""
    total = n = 0
    for rec in cache.records():
        if rec.get("teacher") != teacher_id or rec.get("template_version") != template_version:
            continue
        usage = rec.get("usage") or (0, 0)
        total += int(usage[1] or 0)
        n += 1
    return (total / n, n) if n else None


@dataclass
class Estimate:
    """What a run would send and cost, for one teacher."""

    teacher: str
    requests: int
    cached: int                 # answered by the cache: free
    to_send: int
    prompt_tokens: int
    completion_tokens: int
    prompt_source: str          # "tokenizer <name>" | "estimate (chars/4, SID tags x7)"
    completion_source: str      # "observed mean of N cached answers" | "budget (max_tokens x n)"
    cost_usd: float | None
    price_source: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_requests(config: TeacherConfig, requests: list[ChatRequest], cache: Any,
                      key: Any) -> Estimate:
    """Tokens and cost of sending `requests` to this teacher now (see the module docstring). `key(request)`
    is the engine's cache key, so cached requests are recognised exactly as the engine will."""
    seen: set[str] = set()
    todo: list[ChatRequest] = []
    cached = 0
    for r in requests:
        k = key(r)
        if k in cache:
            cached += 1
        elif k not in seen:                  # duplicates in one batch are sent once
            seen.add(k)
            todo.append(r)
    tok = load_tokenizer(config) if todo else None
    p_tokens = sum(prompt_tokens(r, tok) for r in todo)
    c_tokens = 0.0
    sources = set()
    means: dict[str, tuple[float, int] | None] = {}
    for r in todo:
        tv = r.template_version
        if tv not in means:
            means[tv] = observed_completion_mean(cache, config.teacher_id, tv)
        m = means[tv]
        if m is not None:
            c_tokens += m[0]                 # per request (its n choices together)
            sources.add(f"observed mean of {m[1]} cached answers")
        else:
            c_tokens += r.params.max_tokens * max(1, r.params.n)
            sources.add("budget (max_tokens x n)")
    prices = teacher_prices(config)
    cost = prices.cost(p_tokens, c_tokens) if prices else None
    name = getattr(tok, "name_or_path", None)
    return Estimate(teacher=config.teacher_id, requests=len(requests), cached=cached, to_send=len(todo),
                    prompt_tokens=int(p_tokens), completion_tokens=int(round(c_tokens)),
                    prompt_source=f"tokenizer {name}" if tok is not None else "estimate (chars/4, SID tags x7)",
                    completion_source=" + ".join(sorted(sources)) or "-",
                    cost_usd=round(cost, 6) if cost is not None else None,
                    price_source=prices.source if prices else None)


class BudgetExceeded(RecotError):
    """A run reached its teacher's `max_cost_usd`: it stopped sending, kept every paid answer in the cache,
    and can be resumed by running it again."""

    exit_code = 5
