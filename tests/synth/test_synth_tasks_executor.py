"""`recot synth run --executor ray`: the parsing stage of a teacher task runs as a Ray Data stage on a local
Ray instance and writes exactly the samples of the in-process run."""
import pytest
from fakes.fault_server import FaultServer
from test_synth_tasks_teacher import build_tiny, good_answer, teacher

from storage.datasets import read_dv
from synth.tasks.run import run_task


def test_ray_parsing_gives_the_same_samples_as_local(tmp_ws, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RECOT_RAY_CPUS", "2")
    monkeypatch.setattr("synth.tasks.run.PARSE_BATCH", 2)  # several batches
    build_tiny(tmp_ws)

    def script(body, attempt):
        return good_answer([m["content"] for m in body["messages"] if m["role"] == "user"][-1])

    with FaultServer("scripted", script=script) as srv:
        cfg = teacher(srv)
        local = run_task(tmp_ws, "r3_recommend", teacher=cfg, dataset="local", options={"mode": "blind"})
        sent = len(srv.log)
        remote = run_task(tmp_ws, "r3_recommend", teacher=cfg, dataset="remote", options={"mode": "blind"},
                          executor="ray")
        assert len(srv.log) == sent  # the second run is served from the teacher cache
    a, b = read_dv(local), read_dv(remote)
    assert a.num_rows == b.num_rows >= 3
    assert a.drop(["created_at", "run_id"]).equals(b.drop(["created_at", "run_id"]))
    assert remote.manifest["config"]["executor"] == "ray"
    assert all(r["error"] is None for r in b.to_pylist())
