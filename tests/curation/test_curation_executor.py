"""`--executor ray`: the row-local filters of a chain run as a Ray Data stage on a local Ray instance and give
exactly the verdicts and the curated version of the in-process run."""
import pytest
from curation_samples import HALLUCINATED, good, make_sample, sid, write_samples

from curation.chain import run_chain
from storage.datasets import read_dv


def _samples():
    rows = [good(f"g{i}", i, item=str(1 + i % 5), target=str(1 + i % 3)) for i in range(40)]
    rows.append(make_sample("broken", "<think>unfinished reasoning and no answer", target="1"))
    rows.append(make_sample("halluc", f"<think>{'x ' * 30}</think>I recommend {HALLUCINATED}.", target="1"))
    rows.append(make_sample("right", f"<think>{'y ' * 30}</think>I recommend {sid('1')}.", target="1"))
    return rows


def test_ray_executor_gives_the_same_curation_as_local(cat_ws, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RECOT_RAY_CPUS", "2")
    monkeypatch.setattr("curation.chain.EXECUTOR_BATCH_ROWS", 10)  # several batches from 43 rows
    src = write_samples(cat_ws, _samples())
    local = run_chain(cat_ws, src, "default", out="local")
    remote = run_chain(cat_ws, src, "default", out="remote", executor="ray")
    assert remote.content_hash == local.content_hash
    assert read_dv(remote).equals(read_dv(local))
    q = "SELECT sample_id, filter, keep, reason, score FROM verdicts WHERE dataset = ? ORDER BY ALL"
    assert cat_ws.query(q, ["remote"]) == cat_ws.query(q, ["local"])
    by = {r["sample_id"]: r for r in read_dv(remote).to_pylist()}
    assert by["broken"]["rejected_by"] == "format" and by["halluc"]["rejected_by"] == "sid_grounding"
    assert remote.manifest["config"]["executor"] == "ray"
