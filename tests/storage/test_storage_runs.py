"""recorded_run: one `runs` row per job, closed as done / failed / interrupted whatever the block does."""
import asyncio

import pytest

from storage.runs import get_run, recorded_run


def test_success_records_done_with_stats_and_redacted_config(tmp_ws):
    with recorded_run(tmp_ws, "synth", {"task": "demo", "api_key": "sk-secret-123456"}) as run:
        assert run.id.startswith("synth-")
        assert get_run(tmp_ws, run.id)["status"] == "running"
        run.stats["samples"] = 3
    row = get_run(tmp_ws, run.id)
    assert (row["status"], row["error"], row["stats"]) == ("done", None, {"samples": 3})
    assert row["finished_at"] is not None and row["kind"] == "synth"
    assert "sk-secret-123456" not in str(row["config"])


def test_exception_records_failed_with_error_text_and_partial_stats(tmp_ws):
    with pytest.raises(ValueError, match="bad row 7"):
        with recorded_run(tmp_ws, "ingest", {}) as run:
            run.stats = {"skipped": 2}
            raise ValueError("bad row 7")
    row = get_run(tmp_ws, run.id)
    assert (row["status"], row["error"], row["stats"]) == ("failed", "ValueError: bad row 7", {"skipped": 2})


@pytest.mark.parametrize("exc", [KeyboardInterrupt, asyncio.CancelledError])
def test_interrupt_records_interrupted_not_failed(tmp_ws, exc):
    with pytest.raises(exc):
        with recorded_run(tmp_ws, "train-sft", {}) as run:
            raise exc()
    row = get_run(tmp_ws, run.id)
    assert (row["status"], row["error"]) == ("interrupted", "interrupted")


def test_given_run_id_is_reopened_on_resume(tmp_ws):
    with pytest.raises(RuntimeError):
        with recorded_run(tmp_ws, "teacher", {}) as first:
            raise RuntimeError("server down")
    with recorded_run(tmp_ws, "teacher", {}, run_id=first.id) as again:
        assert get_run(tmp_ws, first.id)["status"] == "running"
    assert again.id == first.id
    row = get_run(tmp_ws, first.id)
    assert (row["status"], row["error"]) == ("done", None)


def test_bookkeeping_error_never_masks_the_jobs_own_error(tmp_ws, monkeypatch):
    import storage.runs as R

    def broken(*a, **k):
        raise OSError("disk full")

    with pytest.raises(ValueError, match="the real one"):
        with recorded_run(tmp_ws, "sids", {}):
            monkeypatch.setattr(R, "finish_run", broken)
            raise ValueError("the real one")
    with pytest.raises(OSError, match="disk full"):  # after a good block the failure to record is not hidden
        with recorded_run(tmp_ws, "sids", {}):
            pass
    with recorded_run(tmp_ws, "sids", {}, quiet=True) as run:  # ... unless the caller asks
        pass
    assert run.status == "done"
