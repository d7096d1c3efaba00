"""The teacher engine: requests in, responses out, with the durable cache, limits, retries and accounting
living here once, whatever the backend.

    engine = make_engine(TeacherConfig(backend="openai", model="qwen3-8b", base_url=...), ws)
    responses = engine.run(requests)              # same order as requests, never raises for one bad request
    async for r in engine.astream(requests): ...  # as they complete (r.index = position in requests)

Flow of one request: cache lookup (hit → served, zero requests) → a worker slot (max_concurrency) → RPM/TPM
limiters → backend attempt (bounded by timeout_s) → usability check (empty / truncated / invalid JSON) →
on failure, the retry decision in `_attempt_loop` (the only place retries happen) → the finished response
(ok or error) is appended to the cache log *before* it is handed to the caller, so a killed job resumes
without repeating or duplicating anything it reported.

Cost: prices come from cost.teacher_prices (typed in the config, else genai-prices' table). With
`max_cost_usd` set, a worker takes no new request when the run's fresh spending (every paid attempt, retries
included), plus the requests in flight and this one at the mean cost of the run's finished requests so far,
would pass it (before any request has finished the mean is unknown, so the first wave of up to
max_concurrency requests is not predicted). Requests in flight finish and are cached, then the run raises
`BudgetExceeded` naming what was spent and what is left. Re-running continues from the cache, paying only
for what is left.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from storage.answer import THINK_CLOSE, extract_json_object
from storage.errors import ConfigError
from synth.teacher.backends import Backend, Completion, make_backend
from synth.teacher.cache import TeacherCache
from synth.teacher.config import TeacherConfig
from synth.teacher.cost import BudgetExceeded, Prices, teacher_prices
from synth.teacher.errors import TRANSIENT_KINDS, UNUSABLE_KINDS, TeacherAttemptError
from synth.teacher.types import ChatRequest, ChatResponse, Usage

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- usability
def check_usable(request: ChatRequest, comp: Completion) -> None:
    """Raise TeacherAttemptError(empty|truncated|invalid_json) when no choice can be used.

    With n > 1 the request succeeds when at least one choice is usable; every choice is kept (its
    finish_reason says 'length' when truncated) so the task's parser decides per choice."""
    if not comp.choices:
        raise TeacherAttemptError("empty", "the server returned no choices")
    problems = []
    for text, reason in zip(comp.choices, comp.finish_reasons or ["stop"] * len(comp.choices)):
        if reason == "length":
            problems.append(("truncated", f"the answer hit the token budget max_tokens={request.params.max_tokens} "
                                          f"(finish_reason 'length'); raise the task's max_tokens option or the "
                                          f"teacher config's max_tokens"))
        elif not (text or "").strip():
            problems.append(("empty", "the answer is empty"))
        elif request.json_schema is not None:
            # the same extraction the answer's consumer uses (storage.answer), on the answer after a think
            # block (a reasoning model's thinking may hold braces): retry exactly when the consumer would fail
            answer = text.split(THINK_CLOSE, 1)[1] if THINK_CLOSE in text else text
            _, why = extract_json_object(answer)
            if why:
                problems.append(("invalid_json", f"JSON was requested but the answer has no JSON object: {why}"))
                continue
            return
        else:
            return
    kind, msg = problems[0]
    err = TeacherAttemptError(kind, msg)
    err.usage = comp.usage  # type: ignore[attr-defined]  (paid tokens still count)
    raise err


def cache_key(config: TeacherConfig, request: ChatRequest) -> str:
    """The durable cache key of `request` sent to this teacher (what the engine looks up and stores)."""
    return request.key(config.backend, config.model, config.extra_body or None)


# ---------------------------------------------------------------------- accounting
class Accounting:
    """Counters of one engine (cumulative over its runs)."""

    def __init__(self) -> None:
        self.requests = 0          # requests asked for (duplicates included)
        self.unique = 0            # distinct cache keys among them
        self.cached = 0            # served from the cache (per request asked for)
        self.sent = 0              # attempts handed to the backend (retries included)
        self.completed = 0         # fresh successes
        self.failed = 0            # fresh error responses
        self.retries = 0
        self.failures: Counter = Counter()        # final error kind per failed request
        self.attempt_errors: Counter = Counter()  # every failed attempt by kind
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latencies: list[float] = []          # end-to-end seconds of fresh successes
        self.wall_s = 0.0

    def as_dict(self, config: TeacherConfig, prices: Prices | None = None) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return round(lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))], 4)

        prices = prices if prices is not None else teacher_prices(config)
        cost = round(prices.cost(self.prompt_tokens, self.completion_tokens), 6) if prices else None
        return {
            "teacher": config.teacher_id, "requests": self.requests, "unique": self.unique,
            "cached": self.cached, "sent": self.sent, "completed": self.completed, "failed": self.failed,
            "retries": self.retries, "failures": dict(self.failures), "attempt_errors": dict(self.attempt_errors),
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "latency_s": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                          "mean": round(sum(lat) / len(lat), 4) if lat else None},
            "cost_usd": cost, "price_source": prices.source if prices else None, "wall_s": round(self.wall_s, 3),
        }


# ---------------------------------------------------------------------- the engine
class TeacherEngine:
    """One teacher (backend + model) with its cache and accounting. Reuse one engine for a job."""

    def __init__(self, config: TeacherConfig, backend: Backend, cache: TeacherCache, *, ws=None,
                 run_id: str | None = None):
        self.config = config
        self._teacher_id = config.teacher_id
        self.backend = backend
        self.cache = cache
        self.ws = ws
        self.run_id = run_id
        self._owns_run = False
        self._run_started = False
        self._acc = Accounting()
        self._rng = random.Random()
        self._rpm = self._tpm = None
        self.prices = teacher_prices(config)
        if config.max_cost_usd is not None and self.prices is None:
            raise ConfigError(f"teacher {config.teacher_id}: max_cost_usd={config.max_cost_usd} needs prices, and "
                              f"genai-prices has none for this model and server; set price_per_1m_prompt and "
                              f"price_per_1m_completion in the teacher config")

    # ------------------------------------------------------------------ identity & stats
    @property
    def teacher_id(self) -> str:
        return self._teacher_id

    @property
    def stats(self) -> dict[str, Any]:
        d = self._acc.as_dict(self.config, self.prices)
        d["run_id"] = self.run_id
        return d

    def key(self, request: ChatRequest) -> str:
        return cache_key(self.config, request)

    # ------------------------------------------------------------------ runs row
    def _run_row(self) -> Any:
        """The engine's own 'teacher' run row as a `recorded_run` (made, or re-opened for a later run() of this
        engine); a null context when there is no workspace or the caller passed in its own row, which is left to
        the caller (see `_note_in_caller_row`)."""
        if self.ws is None or (self._run_started and not self._owns_run):
            return contextlib.nullcontext()
        from storage.runs import get_run, new_run_id, recorded_run

        self._run_started = True
        if self._owns_run or self.run_id is None or get_run(self.ws, self.run_id) is None:
            self._owns_run = True
            self.run_id = self.run_id or new_run_id("teacher")
            # quiet: accounting must not mask the run's own outcome
            return recorded_run(self.ws, "teacher", {"teacher": self.config.public_dict()}, run_id=self.run_id,
                                quiet=True)
        return contextlib.nullcontext()

    def _note_in_caller_row(self) -> None:
        """Store the accounting under stats['teacher'] of the caller's row (the caller's own stats, written when
        its run ends, should keep it: include engine.stats)."""
        if self.ws is None or self.run_id is None or self._owns_run:
            return
        with self.ws.transaction("teacher") as con:
            row = con.execute("SELECT stats FROM runs WHERE run_id = ?", [self.run_id]).fetchone()
            stats = json.loads(row[0]) if row and row[0] else {}
            stats["teacher"] = self.stats
            con.execute("UPDATE runs SET stats = ? WHERE run_id = ?", [json.dumps(stats, default=str), self.run_id])

    # ------------------------------------------------------------------ limits & retries
    async def _acquire(self, request: ChatRequest) -> None:
        if self._rpm is not None:
            await self._rpm.acquire(1)
        if self._tpm is not None:
            est = sum(len(c) for _, c in request.messages) // 4 + request.params.max_tokens * max(1, request.params.n)
            await self._tpm.acquire(min(est, self.config.tpm))

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        cap = self.config.backoff_max_s
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, cap) + self._rng.uniform(0, 0.05)
        # exponential with "equal jitter": half fixed, half random, so synchronized clients spread out
        d = min(cap, self.config.backoff_base_s * (2 ** (failures - 1)))
        return d / 2 + self._rng.uniform(0, d / 2)

    async def _attempt_loop(self, request: ChatRequest, key: str) -> ChatResponse:
        """Send one request until it succeeds or its retry budget is spent. The only retry loop in recot."""
        cfg, acc = self.config, self._acc
        p = request.params
        stochastic = (p.temperature or 0) > 0 and p.seed is None
        attempts = transient = unusable = 0
        t_start = time.monotonic()
        while True:
            attempts += 1
            await self._acquire(request)
            acc.sent += 1
            try:
                if self.backend.network:
                    async with asyncio.timeout(cfg.timeout_s):   # no extra task per attempt (unlike wait_for)
                        comp = await self.backend.complete(request)
                else:
                    comp = await self.backend.complete(request)
                acc.prompt_tokens += comp.usage.prompt_tokens
                acc.completion_tokens += comp.usage.completion_tokens
                check_usable(request, comp)
                return ChatResponse(request=request, key=key, teacher=self.teacher_id, choices=list(comp.choices),
                                    finish_reasons=list(comp.finish_reasons), usage=comp.usage, attempts=attempts,
                                    latency_s=time.monotonic() - t_start)
            except TimeoutError:
                err = TeacherAttemptError("timeout", f"no answer within timeout_s={cfg.timeout_s}")
            except TeacherAttemptError as exc:
                err = exc
            except Exception as exc:  # noqa: BLE001 — a backend bug fails this request, not the run
                log.debug("unexpected backend error", exc_info=True)
                err = TeacherAttemptError("other", f"{type(exc).__name__}: {exc}")
            acc.attempt_errors[err.kind] += 1
            if err.kind in TRANSIENT_KINDS:
                transient += 1
                retry, n_fail = transient <= cfg.max_retries, transient
            elif err.kind in UNUSABLE_KINDS:
                unusable += 1
                retry, n_fail = stochastic and unusable <= cfg.unusable_retries, unusable
            else:
                retry, n_fail = False, 1
            if not retry:
                usage = getattr(err, "usage", None) or Usage()
                return ChatResponse(request=request, key=key, teacher=self.teacher_id, usage=usage,
                                    error=str(err) or err.kind, error_kind=err.kind, attempts=attempts,
                                    latency_s=time.monotonic() - t_start)
            acc.retries += 1
            await asyncio.sleep(self._backoff(n_fail, err.retry_after))

    # ------------------------------------------------------------------ cache records
    def _record(self, resp: ChatResponse) -> dict[str, Any]:
        return {"key": resp.key, "teacher": resp.teacher, "ok": resp.ok, "choices": resp.choices,
                "finish_reasons": resp.finish_reasons,
                "usage": [resp.usage.prompt_tokens, resp.usage.completion_tokens],
                "error": resp.error, "error_kind": resp.error_kind, "attempts": resp.attempts,
                "latency_s": round(resp.latency_s, 4), "ts": time.time(), "run_id": self.run_id,
                "messages_sha": resp.request.messages_digest(),
                "template_version": resp.request.template_version}

    def _from_record(self, request: ChatRequest, rec: dict[str, Any], index: int) -> ChatResponse:
        pt, ct = rec.get("usage") or (0, 0)
        return ChatResponse(request=request, key=rec["key"], teacher=rec.get("teacher", self.teacher_id),
                            choices=list(rec["choices"]), finish_reasons=list(rec.get("finish_reasons") or []),
                            usage=Usage(pt, ct), attempts=rec.get("attempts", 1),
                            latency_s=rec.get("latency_s", 0.0), cached=True, index=index)

    # ------------------------------------------------------------------ streaming
    async def astream(self, requests: Iterable[ChatRequest]) -> AsyncIterator[ChatResponse]:
        """Yield one response per request as they complete (cache hits first). `response.index` is the
        request's position. Requests with the same cache key are sent once and answered for each."""
        requests = list(requests)
        acc = self._acc
        t0 = time.monotonic()
        self.cache.reopen()
        with self._run_row() as run:  # None when the caller owns the row
            groups: dict[str, list[int]] = {}
            for i, r in enumerate(requests):
                groups.setdefault(self.key(r), []).append(i)
            acc.requests += len(requests)
            acc.unique += len(groups)
            misses: list[str] = []
            try:
                for k, idxs in groups.items():
                    rec = self.cache.get(k) if k in self.cache else None
                    if rec is None:
                        misses.append(k)
                        continue
                    for i in idxs:
                        acc.cached += 1
                        yield self._from_record(requests[i], rec, i)
                if misses:
                    async for k, resp in self._send_all(misses, requests, groups):
                        for i in groups[k]:
                            yield replace(resp, request=requests[i], index=i)
            finally:
                acc.wall_s += time.monotonic() - t0
                self.cache.flush()
                if run is not None:
                    run.stats = self.stats  # recorded_run closes the row: done / failed / interrupted
                else:
                    try:
                        self._note_in_caller_row()
                    except Exception:  # noqa: BLE001 — accounting must not mask the run's own outcome
                        log.warning("could not store teacher accounting for run %s", self.run_id, exc_info=True)

    async def _send_all(self, misses: list[str], requests: list[ChatRequest],
                        groups: dict[str, list[int]]) -> AsyncIterator[tuple[str, ChatResponse]]:
        from aiolimiter import AsyncLimiter

        cfg, acc = self.config, self._acc
        self._rpm = AsyncLimiter(cfg.rpm, 60) if cfg.rpm else None
        self._tpm = AsyncLimiter(cfg.tpm, 60) if cfg.tpm else None
        todo: asyncio.Queue[str] = asyncio.Queue()
        for k in misses:
            todo.put_nowait(k)
        done: asyncio.Queue = asyncio.Queue()
        p0, c0 = acc.prompt_tokens, acc.completion_tokens
        budget, prices = cfg.max_cost_usd, self.prices

        flight = {"in": 0, "done": 0}

        def spent() -> float:
            """Fresh spending of this run: every paid attempt since it started."""
            return prices.cost(acc.prompt_tokens - p0, acc.completion_tokens - c0) if prices else 0.0

        def mean_cost() -> float:
            return spent() / flight["done"] if flight["done"] else 0.0

        def over_budget() -> bool:
            """Would one more request (with those in flight, at the mean cost so far) pass the budget?"""
            if budget is None:
                return False
            s = spent()
            return s >= budget or s + (flight["in"] + 1) * mean_cost() > budget

        async def worker() -> None:
            try:
                while True:
                    if over_budget():
                        return                              # no new request; in-flight ones finish
                    try:
                        k = todo.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    flight["in"] += 1
                    try:
                        resp = await self._attempt_loop(requests[groups[k][0]], k)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001 — never let one request stop the run
                        resp = ChatResponse(request=requests[groups[k][0]], key=k, teacher=self.teacher_id,
                                            error=f"{type(exc).__name__}: {exc}", error_kind="other")
                    finally:
                        flight["in"] -= 1
                        flight["done"] += 1
                    self.cache.put(self._record(resp))     # durable before anyone sees it
                    if resp.ok:
                        acc.completed += 1
                        acc.latencies.append(resp.latency_s)
                    else:
                        acc.failed += 1
                        acc.failures[resp.error_kind] += 1
                    done.put_nowait((k, resp))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # e.g. the cache disk is full: stop the run, loudly
                done.put_nowait((None, exc))
            finally:
                done.put_nowait((None, None))               # this worker is done

        await self.backend.start()
        workers = [asyncio.create_task(worker()) for _ in range(min(cfg.max_concurrency, len(misses)))]
        answered = finished = 0
        try:
            while answered < len(misses) and finished < len(workers):
                k, resp = await done.get()
                if k is None:
                    if resp is not None:
                        raise resp
                    finished += 1
                    continue
                answered += 1
                yield k, resp
            if answered < len(misses):
                raise BudgetExceeded(
                    f"teacher {self.teacher_id}: budget max_cost_usd={budget} reached: spent ${spent():.4f} on "
                    f"{answered} fresh requests of this run (${mean_cost():.4f} each on average), so the next "
                    f"would pass it; {len(misses) - answered} requests were not sent. Every paid answer is in the "
                    f"cache: run the same command again (raise max_cost_usd in the teacher config to finish in one "
                    f"go) and only the rest is sent")
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.backend.aclose()

    # ------------------------------------------------------------------ sync API
    def run(self, requests: Iterable[ChatRequest], progress: bool = True) -> list[ChatResponse]:
        """All responses, in request order. Errors are per response (`r.ok`, `r.error_kind`), never raised."""
        requests = list(requests)

        async def main() -> list[ChatResponse]:
            out: list[ChatResponse | None] = [None] * len(requests)
            bar = _Progress(len(requests), f"teacher {self.config.name or self.teacher_id}") if progress else None
            try:
                async for r in self.astream(requests):
                    out[r.index] = r
                    if bar:
                        bar.advance(r)
            finally:
                if bar:
                    bar.close()
            return out  # type: ignore[return-value]

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(main())
        # called from inside an event loop (notebook, streamlit): run ours in a thread
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["v"] = asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001
                box["e"] = exc

        t = threading.Thread(target=target, name="teacher-run")
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box["v"]

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> TeacherEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Progress:
    """A rich progress bar with the counts that matter while a run goes (cached, errors)."""

    def __init__(self, total: int, label: str):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.cached = self.errors = 0
        self._p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
        self._t = self._p.add_task(label, total=total, info="")
        self._p.start()

    def advance(self, r: ChatResponse) -> None:
        self.cached += r.cached
        self.errors += not r.ok
        self._p.update(self._t, advance=1, info=f"cached {self.cached} · errors {self.errors}")

    def close(self) -> None:
        self._p.stop()


# ---------------------------------------------------------------------- factory
def make_engine(config: TeacherConfig | dict | str | None, ws=None, run_id: str | None = None, *,
                cache_dir: str | Path | None = None, backend: Backend | None = None) -> TeacherEngine:
    """An engine for `config` (a TeacherConfig, dict, YAML path, 'backend:model' or None = embedded model)
    with its cache under `ws.cache_dir/'teacher'` (or `cache_dir`). Accounting goes to the runs row
    `run_id` (made when absent) when a workspace is given."""
    cfg = TeacherConfig.coerce(config)
    if cache_dir is None:
        if ws is None:
            raise ConfigError("make_engine needs a workspace (or cache_dir) for its durable request cache")
        cache_dir = Path(ws.cache_dir) / "teacher"
    cache = TeacherCache(cache_dir, fsync_interval_ms=cfg.fsync_interval_ms)
    return TeacherEngine(cfg, backend or make_backend(cfg), cache, ws=ws, run_id=run_id)
