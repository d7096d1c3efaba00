"""Shared machinery of the in-process backends (local, vllm): requests queue up while the model is busy and
are handed to a worker thread one batch at a time, so the event loop (progress, cache writes, other
backends) stays responsive and the model sees batches rather than single prompts."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from synth.teacher.backends.base import Backend, Completion
from synth.teacher.errors import TeacherAttemptError
from synth.teacher.types import ChatRequest

log = logging.getLogger(__name__)


class BatchingBackend(Backend):
    network = False
    max_batch: int = 8

    def __init__(self) -> None:
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def can_share_batch(self, a: ChatRequest, b: ChatRequest) -> bool:
        """Whether two requests may be generated in one call (default: always)."""
        return True

    def generate_batch(self, requests: list[ChatRequest]) -> list[Completion | Exception]:
        """Runs in a worker thread; one result (or exception) per request, in order."""
        raise NotImplementedError

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._work(), name=f"{self.name}-batcher")

    async def complete(self, request: ChatRequest) -> Completion:
        assert self._queue is not None, "backend not started"
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, fut))
        return await fut

    async def _work(self) -> None:
        assert self._queue is not None
        held: list = []
        while True:
            first = held.pop(0) if held else await self._queue.get()
            batch = [first]
            # take everything already waiting that may share the call, up to max_batch
            waiting, held = held, []
            while True:
                try:
                    waiting.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            for item in waiting:
                if len(batch) < self.max_batch and self.can_share_batch(first[0], item[0]):
                    batch.append(item)
                else:
                    held.append(item)
            live = [(r, f) for r, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self.generate_batch, [r for r, _ in live])
            except TeacherAttemptError as exc:
                results = [exc] * len(live)
            except Exception as exc:  # a model error fails this batch's requests, not the run
                log.exception("%s batch of %d failed", self.name, len(live))
                results = [TeacherAttemptError("other", f"{type(exc).__name__}: {exc}")] * len(live)
            for (_, fut), res in zip(live, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
        self._worker = None
        self._queue = None


def same_sampling(a: ChatRequest, b: ChatRequest, *, allow_seed: bool = False) -> bool:
    """Requests with identical sampling parameters (and no per-request seed unless allowed) batch together."""
    if not allow_seed and (a.params.seed is not None or b.params.seed is not None):
        return False
    return a.params == b.params and a.json_schema == b.json_schema


Checker = Callable[[ChatRequest, ChatRequest], bool]
