"""recot's offline vLLM teacher vs vLLM's own `LLM.chat`, on the same prompts, in the same run, on CPU.

    python benchmarks/teacher_vllm.py [--prompts 64] [--max-tokens 128] [--rounds 5]

recot side: `make_engine(TeacherConfig(backend="vllm"))` — durable cache (fresh per round) and accounting on,
vLLM in its worker process (synth/teacher/backends/vllm_worker.py). Reference side: a plain script that
holds `vllm.LLM(...)` with the same arguments and calls `llm.chat(conversations, SamplingParams(...))` once
per round. Both run under the vLLM interpreter (.venv-vllm, scripts/setup_vllm.sh) with the embedded
SmolLM2-135M; both models are loaded before timing starts and rounds alternate who goes first. Greedy
decoding, so both sides generate the same tokens; throughput is completion tokens / wall second, the ratio
recot / reference (goal >= 0.9): best round of each side, and the median of the per-round ratios (this
2-core machine is shared, so single rounds swing by ±25%). Writes benchmarks/results/teacher_vllm.json.

This file is also the reference process: `--reference '<json>'` (run under the vLLM interpreter) loads the
model, then answers each `go` line on stdin with one timed `llm.chat` call as a JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_prompts(n: int, tag: str) -> list[list[dict[str, str]]]:
    genres = ["science fiction", "comedy", "drama", "thriller", "animation", "romance", "horror", "documentary"]
    return [[{"role": "system", "content": "You are a recommender explaining its picks."},
             {"role": "user", "content": f"[{tag}] User {i} watched three {genres[i % 8]} movies last week and "
                                         f"one {genres[(i + 3) % 8]} movie today. Describe their taste and "
                                         f"suggest what kind of movie to watch next, in a short paragraph."}]
            for i in range(n)]


# ------------------------------------------------------------------------------------- reference process
def reference_main(spec_json: str) -> int:
    """vLLM's own API, nothing of recot: load once, then one timed `LLM.chat` per `go` line."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                                      # vLLM's logs go to stderr, results to the real stdout
    spec = json.loads(spec_json)
    import vllm

    t0 = time.perf_counter()
    llm = vllm.LLM(**spec["llm"])
    proto.write(json.dumps({"ready": True, "load_s": round(time.perf_counter() - t0, 1),
                            "vllm": vllm.__version__}) + "\n")
    params = vllm.SamplingParams(temperature=0.0, max_tokens=spec["max_tokens"])
    for line in sys.stdin:
        tag = line.split()[1]
        convs = make_prompts(spec["prompts"], tag)
        t0 = time.perf_counter()
        outs = llm.chat(convs, sampling_params=params, use_tqdm=False)
        wall = time.perf_counter() - t0
        proto.write(json.dumps({"wall_s": wall, "completion_tokens": sum(len(o.outputs[0].token_ids) for o in outs),
                                "prompt_tokens": sum(len(o.prompt_token_ids) for o in outs),
                                "texts": [o.outputs[0].text for o in outs]}) + "\n")
    return 0


# ------------------------------------------------------------------------------------------ recot side
def main() -> None:
    sys.path.insert(0, str(ROOT))
    from synth.teacher.backends.vllm_backend import get_worker, llm_kwargs, stop_workers, vllm_python
    from synth.teacher.config import TeacherConfig
    from synth.teacher.engine import make_engine
    from synth.teacher.types import ChatRequest, SamplingParams

    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "teacher_vllm.json"))
    a = ap.parse_args()

    # the same vllm.LLM arguments on both sides: the worker's CPU defaults spelled out
    cfg = TeacherConfig(backend="vllm", max_concurrency=a.prompts,
                        vllm_kwargs={"dtype": "bfloat16", "enforce_eager": True,
                                     "structured_outputs_config": {"backend": "xgrammar",
                                                                   "disable_any_whitespace": True}})
    kwargs = llm_kwargs(cfg)
    python = vllm_python()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2"),
           "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    tmp = Path(tempfile.mkdtemp(prefix="recot-bench-vllm-"))

    t0 = time.perf_counter()
    get_worker(cfg).wait_ready()
    recot_load = time.perf_counter() - t0
    print(f"recot vLLM worker loaded in {recot_load:.1f}s", flush=True)
    ref = subprocess.Popen([python, __file__, "--reference",
                            json.dumps({"llm": kwargs, "prompts": a.prompts, "max_tokens": a.max_tokens})],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                           stderr=open(tmp / "reference.log", "w"))
    ready = json.loads(ref.stdout.readline() or '{"ready": false}')
    if not ready.get("ready"):
        raise SystemExit(f"the reference vLLM process failed; see {tmp / 'reference.log'}")
    print(f"reference vllm.LLM loaded in {ready['load_s']}s", flush=True)

    def run_reference(tag: str) -> dict:
        ref.stdin.write(f"go {tag}\n")
        ref.stdin.flush()
        return json.loads(ref.stdout.readline())

    def run_recot(tag: str, rnd: int) -> dict:
        reqs = [ChatRequest.from_messages(m, SamplingParams(temperature=0.0, max_tokens=a.max_tokens))
                for m in make_prompts(a.prompts, tag)]
        engine = make_engine(cfg, cache_dir=tmp / f"cache{rnd}")
        t0 = time.perf_counter()
        out = engine.run(reqs, progress=False)
        wall = time.perf_counter() - t0
        assert engine.stats["sent"] == a.prompts and all(r.ok or r.error_kind == "truncated" for r in out)
        toks = engine.stats["completion_tokens"]
        engine.close()
        return {"wall_s": wall, "completion_tokens": toks, "prompt_tokens": engine.stats["prompt_tokens"],
                "texts": [r.choices[0] if r.choices else None for r in out]}

    rounds = []
    try:
        run_reference("warmup")
        run_recot("warmup", -1)
        for rnd in range(a.rounds):
            tag = f"round{rnd}"
            if rnd % 2:
                rec, refr = run_recot(tag, rnd), run_reference(tag)
            else:
                refr, rec = run_reference(tag), run_recot(tag, rnd)
            # an answer cut at max_tokens is an error row in recot (no text; its tokens still count): compare
            # the texts of the others
            pairs = [(x, y) for x, y in zip(rec.pop("texts"), refr.pop("texts")) if x is not None]
            same = sum(x == y for x, y in pairs)
            diff = [{"recot": x, "reference": y} for x, y in pairs if x != y][:2]
            ratio = (rec["completion_tokens"] / rec["wall_s"]) / (refr["completion_tokens"] / refr["wall_s"])
            rounds.append({"recot": rec, "reference": refr, "ratio": round(ratio, 3),
                           "truncated_at_max_tokens": a.prompts - len(pairs),
                           "identical_texts_of_untruncated": f"{same}/{len(pairs)}", "first_differences": diff})
            print(f"round {rnd}: recot {rec['completion_tokens'] / rec['wall_s']:.0f} tok/s, vllm LLM.chat "
                  f"{refr['completion_tokens'] / refr['wall_s']:.0f} tok/s (ratio {ratio:.2f}), identical texts "
                  f"{same}/{len(pairs)} untruncated", flush=True)
    finally:
        ref.stdin.close()
        try:
            ref.wait(timeout=30)
        except subprocess.TimeoutExpired:
            ref.kill()
        stop_workers()
        shutil.rmtree(tmp, ignore_errors=True)

    def tps(side: str) -> float:
        return max(r[side]["completion_tokens"] / r[side]["wall_s"] for r in rounds)

    result = {
        "benchmark": "recot offline vLLM teacher (engine + cache + worker process) vs vllm.LLM.chat, same prompts",
        "model": "SmolLM2-135M-Instruct (embedded), bfloat16, CPU",
        "vllm": ready["vllm"], "llm_kwargs": {k: v for k, v in kwargs.items() if k != "model"},
        "prompts": a.prompts, "max_tokens": a.max_tokens, "temperature": 0.0, "rounds": rounds,
        "load_s": {"recot_worker": round(recot_load, 1), "reference": ready["load_s"]},
        "recot_tokens_per_s": round(tps("recot"), 1), "reference_tokens_per_s": round(tps("reference"), 1),
        "goal_ratio": 0.9,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for r in rounds:
        for side in ("recot", "reference"):
            r[side]["wall_s"] = round(r[side]["wall_s"], 2)
    result["throughput_ratio"] = round(result["recot_tokens_per_s"] / result["reference_tokens_per_s"], 3)
    ratios = sorted(r["ratio"] for r in rounds)
    result["throughput_ratio_median_of_rounds"] = ratios[len(ratios) // 2]
    result["meets_goal"] = result["throughput_ratio"] >= result["goal_ratio"]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--reference":
        sys.exit(reference_main(sys.argv[2]))
    main()
