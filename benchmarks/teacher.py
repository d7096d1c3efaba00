"""Teacher engine overhead: recot's engine (durable cache + accounting + limits on) vs a plain `AsyncOpenAI`
+ semaphore loop, both against the same fast local OpenAI-compatible server (the fault server in echo
mode, in its own process so it does not share the client's GIL), in the same run.

    python benchmarks/teacher.py [--requests 2000] [--concurrency 64] [--rounds 3]

Reports throughput of both (best of `rounds`, alternating so machine noise hits both alike), the ratio
(goal >= 0.95), the client CPU per request of both (the engine's overhead shows up there even when a busy
machine makes wall time noisy) and the time of a full cache-hit rerun (zero requests). Writes
benchmarks/results/teacher.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULT_SERVER = ROOT / "tests" / "fakes" / "fault_server.py"
sys.path.insert(0, str(ROOT))

from synth.teacher.config import TeacherConfig  # noqa: E402
from synth.teacher.engine import make_engine  # noqa: E402
from synth.teacher.types import ChatRequest, SamplingParams  # noqa: E402


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    port_file = tmp / "port.txt"
    # the fault server is a test fake (tests/fakes/), run by file path in its own process
    proc = subprocess.Popen([sys.executable, str(FAULT_SERVER), "--mode", "echo", "--port-file", str(port_file)],
                            cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("fault server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}/v1"


def make_requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest.from_messages(
        [{"role": "system", "content": "You are a recommender explaining its picks."},
         {"role": "user", "content": f"[{tag}] user {i} watched <|sid_begin|><s_a_{i % 256}><s_b_{i % 7}>"
                                     f"<s_c_{i % 13}><|sid_end|>; what next and why?"}],
        SamplingParams(temperature=0.7, max_tokens=256)) for i in range(n)]


async def plain_loop(base_url: str, requests: list[ChatRequest], concurrency: int) -> float:
    """The reference: what one would write by hand with the openai client."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    results: list[str | None] = [None] * len(requests)

    async def one(i: int, r: ChatRequest) -> None:
        async with sem:
            resp = await client.chat.completions.create(model="fake", messages=r.message_dicts(),
                                                        temperature=r.params.temperature,
                                                        top_p=r.params.top_p, max_tokens=r.params.max_tokens)
            results[i] = resp.choices[0].message.content

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await client.close()
    assert all(results), "plain loop lost answers"
    return elapsed, cpu


async def plain_pool(base_url: str, requests: list[ChatRequest], concurrency: int) -> tuple[float, float]:
    """A second, stricter reference: the plain client driven by a fixed pool of `concurrency` workers
    (the engine's own structure), so the ratio against it is the engine's pure overhead."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    results: list[str | None] = [None] * len(requests)
    todo = iter(range(len(requests)))

    async def worker() -> None:
        for i in todo:
            r = requests[i]
            resp = await client.chat.completions.create(model="fake", messages=r.message_dicts(),
                                                        temperature=r.params.temperature,
                                                        top_p=r.params.top_p, max_tokens=r.params.max_tokens)
            results[i] = resp.choices[0].message.content

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    await client.close()
    assert all(results), "plain pool lost answers"
    return elapsed, cpu


def recot_run(base_url: str, requests: list[ChatRequest], concurrency: int,
              cache_dir: Path) -> tuple[float, float, dict, float]:
    cfg = TeacherConfig(backend="openai", model="fake", base_url=base_url, max_concurrency=concurrency)
    engine = make_engine(cfg, cache_dir=cache_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    out = engine.run(requests, progress=False)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert all(r.ok for r in out) and engine.stats["sent"] == len(requests)
    stats = engine.stats
    engine.close()
    # the cache-hit rerun: a fresh engine (new process state) over the same cache
    engine2 = make_engine(cfg, cache_dir=cache_dir)
    t1 = time.perf_counter()
    again = engine2.run(requests, progress=False)
    rerun = time.perf_counter() - t1
    assert all(r.cached for r in again) and engine2.stats["sent"] == 0
    engine2.close()
    return elapsed, cpu, stats, rerun


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "teacher.json"))
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-teacher-"))
    server, base_url = start_server(tmp)
    try:
        asyncio.run(plain_loop(base_url, make_requests(100, "warmup"), a.concurrency))  # warm the server
        plain_times, recot_times, plain_cpu, recot_cpu, reruns, last_stats = [], [], [], [], [], {}
        pool_times: list[float] = []
        pool_cpu: list[float] = []
        for rnd in range(a.rounds):
            reqs = make_requests(a.requests, f"round{rnd}")
            if rnd % 2:        # alternate who goes first, so a burst of machine load hits both alike
                t, c, last_stats, rerun = recot_run(base_url, reqs, a.concurrency, tmp / f"cache{rnd}")
                pt, pc = asyncio.run(plain_loop(base_url, reqs, a.concurrency))
                wt, wc = asyncio.run(plain_pool(base_url, reqs, a.concurrency))
            else:
                wt, wc = asyncio.run(plain_pool(base_url, reqs, a.concurrency))
                pt, pc = asyncio.run(plain_loop(base_url, reqs, a.concurrency))
                t, c, last_stats, rerun = recot_run(base_url, reqs, a.concurrency, tmp / f"cache{rnd}")
            pool_times.append(wt)
            pool_cpu.append(wc)
            plain_times.append(pt)
            plain_cpu.append(pc)
            recot_times.append(t)
            recot_cpu.append(c)
            reruns.append(rerun)
            print(f"round {rnd}: plain {a.requests / plain_times[-1]:.0f} req/s ({plain_cpu[-1]:.2f} cpu-s), "
                  f"plain pool {a.requests / wt:.0f} req/s ({wc:.2f} cpu-s), "
                  f"recot {a.requests / t:.0f} req/s ({c:.2f} cpu-s), cache-hit rerun {rerun:.3f}s", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    plain_rps = a.requests / min(plain_times)
    recot_rps = a.requests / min(recot_times)
    result = {
        "benchmark": "teacher engine overhead vs plain AsyncOpenAI (+ semaphore/gather, and + worker pool)",
        "server": "tests/fakes/fault_server.py echo mode, separate process, 127.0.0.1",
        "requests": a.requests, "concurrency": a.concurrency, "rounds": a.rounds,
        "plain_asyncopenai": {"seconds": [round(x, 3) for x in plain_times], "best_rps": round(plain_rps, 1),
                              "client_cpu_ms_per_request": round(1000 * min(plain_cpu) / a.requests, 3)},
        "plain_asyncopenai_worker_pool": {"seconds": [round(x, 3) for x in pool_times],
                                          "best_rps": round(a.requests / min(pool_times), 1),
                                          "client_cpu_ms_per_request": round(1000 * min(pool_cpu) / a.requests, 3)},
        "recot_engine": {"seconds": [round(x, 3) for x in recot_times], "best_rps": round(recot_rps, 1),
                         "client_cpu_ms_per_request": round(1000 * min(recot_cpu) / a.requests, 3),
                         "cache": "on (fresh dir per round)", "accounting": "on",
                         "latency_s": last_stats.get("latency_s")},
        "throughput_ratio": round(recot_rps / plain_rps, 3),
        "throughput_ratio_median": round(sorted(plain_times)[len(plain_times) // 2]
                                         / sorted(recot_times)[len(recot_times) // 2], 3),
        "client_cpu_ratio_plain_over_recot": round(min(plain_cpu) / min(recot_cpu), 3),
        "throughput_ratio_vs_worker_pool": round(min(pool_times) / min(recot_times), 3),
        "throughput_ratio_vs_worker_pool_median": round(sorted(pool_times)[len(pool_times) // 2]
                                                        / sorted(recot_times)[len(recot_times) // 2], 3),
        "client_cpu_ratio_pool_over_recot": round(min(pool_cpu) / min(recot_cpu), 3),
        "goal_ratio": 0.95,
        "cache_hit_rerun_s": {"runs": [round(x, 3) for x in reruns], "best": round(min(reruns), 3),
                              "requests_sent": 0},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    result["meets_goal"] = result["throughput_ratio"] >= result["goal_ratio"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
