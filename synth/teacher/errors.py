"""Typed failures of one attempt. Backends raise `TeacherAttemptError` with a `kind`; the engine decides,
in one place (engine._attempt_loop), whether the kind is retried and what ends up in the response row."""
from __future__ import annotations

from storage.errors import RecotError

# Transport faults: another attempt of the same request may well succeed.
TRANSIENT_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection", "malformed"})
# The server answered, but the answer cannot be used. Another *sample* may succeed, so these are retried
# only when sampling is random (temperature > 0 and no seed); a seeded or greedy request would come back
# identical.
UNUSABLE_KINDS = frozenset({"empty", "truncated", "invalid_json"})
ERROR_KINDS = TRANSIENT_KINDS | UNUSABLE_KINDS | {"other"}


class TeacherAttemptError(Exception):
    """One attempt failed. `retry_after` is the server's Retry-After (seconds) when it sent one."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None):
        assert kind in ERROR_KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT_KINDS


class BackendUnavailable(RecotError):
    """The backend cannot run here at all (vllm not installed, no GPU, model missing): a setup problem,
    not a per-request error, so it stops the run with an actionable message."""
