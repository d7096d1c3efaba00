"""The durable request cache: reruns make zero requests, the key follows exactly what changes an answer,
errors are retried on rerun, a torn log line is ignored, duplicates in one batch are sent once."""
from __future__ import annotations

import asyncio

from fakes.fault_server import FaultServer

from synth.teacher.cache import TeacherCache
from synth.teacher.config import TeacherConfig
from synth.teacher.engine import make_engine
from synth.teacher.types import ChatRequest, SamplingParams


def _req(text: str, **params) -> ChatRequest:
    return ChatRequest.from_messages([{"role": "user", "content": text}], SamplingParams(**params),
                                     meta={"text": text})


def _cfg(srv, **kw) -> TeacherConfig:
    base = dict(backend="openai", model="fake", base_url=srv.base_url, backoff_base_s=0.01, timeout_s=2)
    return TeacherConfig(**{**base, **kw})


def test_rerun_of_a_finished_job_makes_zero_requests(tmp_ws):
    reqs = [_req(f"q{i}") for i in range(30)]
    with FaultServer("echo") as srv:
        first = make_engine(_cfg(srv), tmp_ws).run(reqs, progress=True)       # with the rich progress bar
        assert len(srv.log) == 30
        engine = make_engine(_cfg(srv, max_concurrency=2, rpm=1000, timeout_s=9), tmp_ws)  # limits differ
        again = engine.run(reqs, progress=False)
        assert len(srv.log) == 30                     # nothing sent
    assert all(r.cached for r in again) and not any(r.cached for r in first)
    assert [r.choices for r in again] == [r.choices for r in first]
    assert [r.request.meta["text"] for r in again] == [f"q{i}" for i in range(30)]
    assert engine.stats["cached"] == 30 and engine.stats["sent"] == 0


def test_changing_a_sampling_parameter_changes_the_key():
    base = _req("same")
    keys = {base.key("openai", "m")}
    for variant in [_req("same", temperature=0.1), _req("same", top_p=0.9), _req("same", max_tokens=7),
                    _req("same", n=2), _req("same", seed=1), _req("same", stop=("x",)),
                    ChatRequest.from_messages(list(base.message_dicts()), json_schema={"type": "object"}),
                    ChatRequest.from_messages(list(base.message_dicts()), template_version="v2")]:
        keys.add(variant.key("openai", "m"))
    keys.add(base.key("openai", "other-model"))
    keys.add(base.key("vllm", "m"))
    assert len(keys) == 11
    # meta (bookkeeping) is not part of the key; neither are limits (they are not in the request at all)
    assert ChatRequest.from_messages(list(base.message_dicts()), meta={"x": 1}).key("openai", "m") == \
        base.key("openai", "m")


def test_errors_are_recorded_but_retried_on_rerun(tmp_ws):
    with FaultServer("scripted", script={"flaky": ["500", "500", "ok"]}) as srv:
        cfg = _cfg(srv, max_retries=1)
        [r1] = make_engine(cfg, tmp_ws).run([_req("flaky")], progress=False)
        assert not r1.ok and r1.error_kind == "server_error"
        engine = make_engine(cfg, tmp_ws)
        assert engine.cache.loaded_errors == 1 and len(engine.cache) == 0
        [r2] = engine.run([_req("flaky")], progress=False)
        assert r2.ok and not r2.cached and len(srv.log) == 3


def test_duplicate_requests_in_one_batch_are_sent_once(tmp_ws):
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv), tmp_ws)
        out = engine.run([_req("dup"), _req("other"), _req("dup")], progress=False)
        assert len(srv.log) == 2
    assert [r.index for r in out] == [0, 1, 2] and out[0].choices == out[2].choices
    assert engine.stats["unique"] == 2 and engine.stats["requests"] == 3


def test_torn_last_line_is_ignored_and_its_request_resent(tmp_ws):
    reqs = [_req(f"t{i}") for i in range(5)]
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv), tmp_ws)
        engine.run(reqs, progress=False)
        engine.close()
        [seg] = engine.cache.segments()
        data = seg.read_bytes()
        lines = data.split(b"\n")
        torn_key = engine.key(reqs[int(__import__("json").loads(lines[-2])["choices"][0].split("t")[-1])])
        seg.write_bytes(data[: len(data) - len(lines[-2]) // 2 - 1])   # cut the last line in half, no newline
        cache = TeacherCache(seg.parent)
        assert cache.torn_lines == 1 and len(cache) == 4 and torn_key not in cache
        engine2 = make_engine(_cfg(srv), tmp_ws)
        out = engine2.run(reqs, progress=False)
        assert len(srv.log) == 6 and engine2.stats["sent"] == 1
        assert sum(not r.cached for r in out) == 1 and all(r.ok for r in out)
    # the rerun wrote a new segment; the torn one is never appended to
    assert len(TeacherCache(seg.parent)) == 5


def test_astream_yields_as_responses_complete(tmp_ws):
    from fakes.fault_server import Fault
    script = {"slow": [Fault("delay", delay_s=0.8)], "fast": ["ok"]}
    with FaultServer("scripted", script=script) as srv:
        engine = make_engine(_cfg(srv), tmp_ws)

        async def collect():
            return [r async for r in engine.astream([_req("slow"), _req("fast")])]

        out = asyncio.run(collect())
    assert [r.index for r in out] == [1, 0]           # the fast one first, tagged with its position


def test_cost_is_computed_from_the_price_table(tmp_ws):
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv, price_per_1m_prompt=2.0, price_per_1m_completion=10.0), tmp_ws)
        engine.run([_req("one two three four")], progress=False)
    st = engine.stats
    assert st["prompt_tokens"] == 4 and st["completion_tokens"] == 5
    assert abs(st["cost_usd"] - (4 * 2.0 + 5 * 10.0) / 1e6) < 1e-12


def test_run_works_when_called_from_inside_an_event_loop(tmp_ws):
    """Notebooks and streamlit already run a loop; run() then drives its own loop in a thread."""
    with FaultServer("echo") as srv:
        engine = make_engine(_cfg(srv), tmp_ws)

        async def inside():
            return engine.run([_req("from a loop")], progress=False)

        [r] = asyncio.run(inside())
    assert r.ok and r.choices == ["echo: from a loop"]


# --------------------------------------------------------------------------- the persistent index
def _fill(cache_dir, segments: int, per_segment: int) -> list[str]:
    """`segments` writer sessions (each closes: a new segment), `per_segment` completed keys each."""
    import hashlib
    keys = []
    for s in range(segments):
        c = TeacherCache(cache_dir, fsync_interval_ms=0)
        for i in range(per_segment):
            k = hashlib.sha256(f"{s}-{i}".encode()).hexdigest()
            c.put({"key": k, "ok": True, "choices": [f"a{s}-{i}"]})
            keys.append(k)
        c.put({"key": "e" * 64, "ok": False, "error": "boom"})
        c.close()
    return keys


def _count_opens(monkeypatch):
    import builtins

    import synth.teacher.cache as mod
    opened = []

    def counting_open(path, *a, **kw):
        opened.append(str(path))
        return builtins.open(path, *a, **kw)
    monkeypatch.setattr(mod, "open", counting_open, raising=False)
    return opened


def test_start_reads_one_index_file_whatever_the_segment_count(tmp_path, monkeypatch):
    few, many = tmp_path / "few", tmp_path / "many"
    keys_few, keys_many = _fill(few, 2, 30), _fill(many, 40, 3)
    opened = _count_opens(monkeypatch)
    for d, keys, segs, last in ((few, keys_few, 2, "a1-29"), (many, keys_many, 40, "a39-2")):
        opened.clear()
        cache = TeacherCache(d)
        assert opened == [str(d / "index.bin")] and cache.files_read == 1      # no segment is read
        assert len(cache.segments()) == segs and len(cache) == len(keys) and set(cache.keys()) == set(keys)
        assert cache.loaded_errors == segs and "e" * 64 not in cache
        assert cache.get(keys[-1])["choices"] == [last]
        assert all(k in cache for k in keys[::7])


def test_a_segment_written_by_a_killed_job_is_scanned_once_then_indexed(tmp_path, monkeypatch):
    import hashlib
    keys = _fill(tmp_path, 3, 5)
    # a job killed mid-write: its segment was never closed, so the index does not cover it; last line torn
    k1, k2 = (hashlib.sha256(x).hexdigest() for x in (b"killed-1", b"killed-2"))
    (tmp_path / "seg-9999999999999999999-1-abcdef.jsonl").write_bytes(
        (f'{{"key":"{k1}","ok":true,"choices":["x"]}}\n' f'{{"key":"{k2}","ok":tr').encode())
    opened = _count_opens(monkeypatch)
    cache = TeacherCache(tmp_path)
    assert cache.files_read == 2 and cache.torn_lines == 1          # index + the uncovered segment only
    assert k1 in cache and k2 not in cache and len(cache) == len(keys) + 1
    opened.clear()
    again = TeacherCache(tmp_path)                                  # the scan was persisted in the index
    assert opened == [str(tmp_path / "index.bin")]
    assert k1 in again and k2 not in again and again.torn_lines == 1 and len(again) == len(keys) + 1
    assert again.get(k1)["choices"] == ["x"]


def test_an_index_that_no_longer_matches_its_segments_is_not_trusted(tmp_path):
    keys = _fill(tmp_path, 2, 4)
    first, second = TeacherCache(tmp_path).segments()
    second.unlink()                                                 # a segment removed by hand
    data = first.read_bytes()
    first.write_bytes(data[: data.index(b"\n") + 1])               # and another cut to its first line
    cache = TeacherCache(tmp_path)
    assert len(cache) == 1 and keys[0] in cache and keys[1] not in cache and keys[5] not in cache
    (tmp_path / "index.bin").write_bytes(b"garbage")               # an unreadable index: read the log
    assert len(TeacherCache(tmp_path)) == 1
