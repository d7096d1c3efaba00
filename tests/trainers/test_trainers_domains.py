"""Specialize-then-unify on a two-domain workspace (users 0-2: books, 3-5: movies): RL per domain makes two
specialists, RFT samples each prompt from its domain's specialist, distillation mixes both domains inside a
batch with each row taught by its domain's teacher, `recot eval --by-domain --both`, mixes train, pretrain
stage 1 trains only the SID embeddings, and RL window prompts outnumber users on MovieLens-100k.

What these tests check (domain routing, which model samples or teaches which row, lineage, one row per domain and
mode, which parameters a frozen stage leaves alone) does not depend on what a pretrained LM knows, so every model
here starts from `tiny_model` (conftest.py: a from-scratch 1-layer model with SmolLM2's tokenizer and the SID
tokens). The two-domain workspace is the tiny one with domains relabelled: same items, same SID version 1, so
`tiny_model` already carries its SID tokens."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train"
DOMAINS = {"0": "books", "1": "books", "2": "books", "3": "movies", "4": "movies", "5": "movies"}
runner = CliRunner()


def _domain_of_user(u: str) -> str:
    return DOMAINS[u]


@pytest.fixture(scope="session")
def _two_domain_template(_tiny_template, tmp_path_factory):
    """The tiny workspace with users (and their interactions, splits, samples) split into two domains;
    dataset r3_domains@v1 = r3_curated with each row's domain."""
    from storage.datasets import read_version, write_version
    from storage.records import CURATED_SCHEMA
    from storage.workspace import Workspace

    root = tmp_path_factory.mktemp("two_domains") / "ws"
    shutil.copytree(_tiny_template, root, ignore=shutil.ignore_patterns(".lock"))
    ws = Workspace.open(root)
    with ws.transaction("test") as con:
        for u, d in DOMAINS.items():
            con.execute("UPDATE splits SET domain = ? WHERE user_id = ?", [d, u])
            con.execute("UPDATE interactions SET domain = ? WHERE user_id = ?", [d, u])
    rows = read_version(ws, "r3_curated", 1).to_pylist()
    for r in rows:
        r["domain"] = _domain_of_user(r["user_id"])
    write_version(ws, "r3_domains", pa.Table.from_pylist(rows, schema=CURATED_SCHEMA), step="test")
    return root


@pytest.fixture
def two_ws(_two_domain_template, tmp_path):
    from storage.workspace import Workspace

    dst = tmp_path / "ws"
    shutil.copytree(_two_domain_template, dst, ignore=shutil.ignore_patterns(".lock"))
    return Workspace.open(dst)


@pytest.fixture(scope="session")
def specialists(_two_domain_template, tiny_model, tmp_path_factory):
    """{domain: model dir} from `recot train rl --domain X` (one GRPO step of `tiny_model` each), and the
    workspace."""
    from storage.workspace import Workspace
    from ui.cli import app

    root = tmp_path_factory.mktemp("specialists")
    shutil.copytree(_two_domain_template, root / "ws", ignore=shutil.ignore_patterns(".lock"))
    out = {}
    for dom in ("books", "movies"):
        r = runner.invoke(app, ["train", "rl", "-c", str(CONFIGS / "rl.cpu.yaml"), "--dataset", "r3_domains@v1",
                                "--domain", dom, "--out", str(root / dom), "-w", str(root / "ws"),
                                "max_steps=1", "max_completion_length=8", f"model={tiny_model}"])
        assert r.exit_code == 0, (r.output, r.exception)
        out[dom] = root / dom
    return out, Workspace.open(root / "ws")


@pytest.mark.slow
def test_rl_per_domain_makes_two_specialists(specialists):
    from storage.runs import get_run
    from trainers.common import model_lineage

    dirs, ws = specialists
    for dom, d in dirs.items():
        lin = model_lineage(d)
        assert lin["kind"] == "rl" and lin["domains"] == [dom]
        assert lin["data"]["domains"] == {dom: 6}, lin["data"]       # 3 users x (think, no-think) prompts
        assert get_run(ws, lin["run_id"])["stats"]["domains"] == [dom]
        assert all(math.isfinite(v["last"]) for v in lin["metrics"].values())


@pytest.mark.slow
def test_rft_samples_each_prompt_from_its_domains_specialist(two_ws, specialists, tiny_model, monkeypatch):
    import trainers.rft as rft
    from storage.datasets import read_dv, resolve
    from trainers.config import load_config
    from trainers.export import to_grpo_dataset

    dirs, _ = specialists
    _, ds = to_grpo_dataset(two_ws, "r3_domains@v1")
    truth = {json.dumps(r["prompt"]): (r["target_sid"], r["think"], r["domain"]) for r in ds}
    calls: list[tuple[str, list[str]]] = []

    def fake_sample_round(ws, model_dir, prompts, cfg, round_id):
        """A 'specialist' that always answers right, recording which model each prompt was sent to."""
        outs = []
        doms = []
        for p in prompts:
            sid, think, dom = truth[json.dumps(list(p))]
            doms.append(dom)
            outs.append([f"<think>\nbecause.\n</think>\n\n{sid}" if think else f"<think>\n\n</think>\n\n{sid}"])
        calls.append((str(model_dir), doms))
        return outs

    monkeypatch.setattr(rft, "sample_round", fake_sample_round)
    spec = f"books={dirs['books']},movies={dirs['movies']}"
    cfg = load_config(rft.RFTConfig, CONFIGS / "rft.cpu.yaml", ["max_steps=1", "n=1", "max_samples=null"],
                      dataset="r3_domains@v1", specialists=spec, out=str(two_ws.root / "rft_out"),
                      model=str(tiny_model))   # the current model, trained on what the specialists sampled
    res = rft.train_rft(two_ws, cfg)
    assert sorted((m, sorted(set(d))) for m, d in calls) == [(str(dirs["books"]), ["books"]),
                                                             (str(dirs["movies"]), ["movies"])]
    assert sum(len(d) for _, d in calls) == len(ds) == 12
    kept = read_dv(resolve(two_ws, f"rft_{res.run_id}")).to_pylist()
    assert len(kept) == 12
    for row in kept:
        assert row["teacher"] == f"specialist:{dirs[row['domain']]}", row["teacher"]
    from trainers.common import model_lineage

    lin = model_lineage(res.out_dir)
    assert set(lin["specialists"]) == {"books", "movies"}
    assert lin["specialists"]["books"]["run_id"] == model_lineage(dirs["books"])["run_id"]


@pytest.mark.slow
def test_distill_batches_mix_domains_and_each_row_has_its_domains_teacher(two_ws, specialists):
    from trainers.common import model_lineage
    from trainers.config import load_config
    from trainers.distill import DistillConfig, train_distill

    dirs, _ = specialists
    teachers = {d: str(p) for d, p in dirs.items()}
    cfg = load_config(DistillConfig, CONFIGS / "distill.cpu.yaml",
                      ["max_steps=1", "per_device_train_batch_size=6", "max_completion_length=6",
                       "route_by=domain"], dataset="r3_domains@v1", teachers=teachers,
                      out=str(two_ws.root / "student"))
    res = train_distill(two_ws, cfg)
    lin = model_lineage(res.out_dir)
    assert lin["routing"] == teachers and lin["route_by"] == "domain"
    assert lin["base_model"] == model_lineage(dirs["books"])["base_model"]   # no `model:`: the specialists' base
    assert lin["batches"], "no batch routing recorded"
    mixed = [b for b in lin["batches"] if len(set(b["domain"])) == 2]
    assert mixed, lin["batches"]                                   # one batch holds both domains
    for b in lin["batches"]:
        assert len(b["domain"]) == len(b["teacher"]) == 6
        assert all(t == teachers[d] for d, t in zip(b["domain"], b["teacher"]))
    assert math.isfinite(lin["metrics"]["loss"]["last"])


@pytest.mark.slow
def test_eval_by_domain_both_prints_a_row_per_domain_and_mode(specialists):
    from ui.cli import app

    dirs, ws = specialists
    r = runner.invoke(app, ["eval", "-m", str(dirs["books"]), "--both", "--by-domain", "--no-baselines",
                            "--k", "1", "--think-budget", "4", "-w", str(ws.root)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, (r.output, r.exception)
    for dom in ("books", "movies"):
        for mode in ("no_think", "think", "race"):
            assert f"{dom} · {mode}" in r.output, r.output


def test_eval_domain_filter_scores_only_that_domains_users(two_ws):
    from trainers.evaluate import test_cases
    from ui.cli import app

    assert [c["user_id"] for c in test_cases(two_ws, 1, domains=["movies"])] == ["3", "4", "5"]
    assert [c["user_id"] for c in test_cases(two_ws, 1, domains=["movies"], max_users=2)] == ["3", "4"]
    r = runner.invoke(app, ["eval", "--domain", "books", "--by-domain", "--k", "1,3", "-w", str(two_ws.root)],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, (r.output, r.exception)
    assert "(3 test users), domain books" in r.output
    assert "books · popular" in r.output and "movies ·" not in r.output
    stored = json.loads(two_ws.query("SELECT config FROM evals ORDER BY created_at DESC LIMIT 1")[0][0])
    assert stored["domains"] == ["books"]
    both = runner.invoke(app, ["eval", "--domain", "books", "--domain", "movies", "--k", "1",
                               "-w", str(two_ws.root)], env={"COLUMNS": "200"})
    assert both.exit_code == 0 and "(6 test users), domain books, movies" in " ".join(both.output.split())
    bad = runner.invoke(app, ["eval", "--domain", "music", "-w", str(two_ws.root)])
    assert bad.exit_code != 0 and "['books', 'movies']" in str(bad.exception)


@pytest.mark.slow
def test_mix_then_sft_trains_on_the_mix(two_ws, tiny_model):
    import pyarrow.compute as pc

    from storage.datasets import read_version, write_version
    from trainers.common import model_lineage
    from ui.cli import app

    t = read_version(two_ws, "r3_domains", 1)
    write_version(two_ws, "cot-curated", t.filter(pc.field("think")), step="test")
    write_version(two_ws, "alignment-curated", t.filter(~pc.field("think")), step="test")
    r = runner.invoke(app, ["datasets", "mix", "alignment-curated:0.5", "cot-curated:0.5", "-o", "mixed",
                            "-w", str(two_ws.root)])
    assert r.exit_code == 0, (r.output, r.exception)
    r = runner.invoke(app, ["train", "sft", "-c", str(CONFIGS / "sft.cpu.yaml"), "--dataset", "mixed",
                            "--out", str(two_ws.root / "sft_mixed"), "-w", str(two_ws.root), "max_steps=1",
                            "max_length=192", f"model={tiny_model}"])
    assert r.exit_code == 0, (r.output, r.exception)
    lin = model_lineage(two_ws.root / "sft_mixed")
    assert lin["datasets"] == ["mixed@v1"] and lin["data"]["rows"] == 10      # 5 kept users x 2 modes
    assert math.isfinite(lin["metrics"]["loss"]["last"])


@pytest.mark.slow
def test_sft_domain_selection_keeps_only_that_domain(two_ws):
    from trainers.export import to_sft_dataset

    _, ds = to_sft_dataset(two_ws, "r3_domains@v1", domains=["movies"])
    assert set(ds["domain"]) == {"movies"} and len(ds) == 4                   # user 5 was rejected


@pytest.mark.slow
def test_pretrain_stage1_trains_only_sid_embeddings_then_stage2_everything(two_ws, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from trainers.common import load_model_and_tokenizer
    from trainers.config import load_config
    from trainers.pretrain import PretrainConfig, train_pretrain
    from trainers.tokenizer import sid_tokens

    cfg = load_config(PretrainConfig, CONFIGS / "pretrain.cpu.yaml",
                      ["max_steps=1", "freeze_llm=true", "learning_rate=0.01", "max_samples=8"],
                      out=str(two_ws.root / "stage1"), model=str(tiny_model))
    res = train_pretrain(two_ws, cfg)
    before, tok, _ = load_model_and_tokenizer(str(tiny_model), ws=two_ws, sid_version=1)
    after = AutoModelForCausalLM.from_pretrained(res.out_dir)
    sid_ids = sorted(tok.convert_tokens_to_ids(sid_tokens(two_ws, 1)))
    other = torch.ones(len(tok), dtype=torch.bool)
    other[sid_ids] = False
    e0, e1 = before.get_input_embeddings().weight, after.get_input_embeddings().weight
    assert torch.equal(e0[other], e1[other])                                   # the LLM's own vocabulary: frozen
    assert not torch.equal(e0[sid_ids], e1[sid_ids])                           # the SID rows: trained
    for (name, p0), (_, p1) in zip(before.model.layers[0].named_parameters(),
                                   after.model.layers[0].named_parameters()):
        assert torch.equal(p0, p1), name
    stages = json.loads((res.out_dir / "recot_lineage.json").read_text())["stages"]
    assert stages[0]["freeze_llm"] and stages[0]["trainable_params"] == e0.numel()

    cfg2 = load_config(PretrainConfig, CONFIGS / "pretrain.cpu.yaml",
                       ["max_steps=1", "max_samples=8", "stages=[{freeze_llm: true}, {freeze_llm: false}]"],
                       out=str(two_ws.root / "stages"), model=str(tiny_model))
    lin = json.loads((train_pretrain(two_ws, cfg2).out_dir / "recot_lineage.json").read_text())
    s1, s2 = lin["stages"]
    assert s1["freeze_llm"] and not s2["freeze_llm"] and s1["trainable_params"] < s2["trainable_params"]


@pytest.mark.slow
def test_rl_window_prompts_outnumber_users_on_movielens(ml100k_sids_ws):
    from trainers.rl import RLConfig, rl_prompts

    cfg = RLConfig(prompts="windows", window_stride=20)
    refs, ds, v = rl_prompts(ml100k_sids_ws, cfg, "unused")
    users = ml100k_sids_ws.query("SELECT count(DISTINCT user_id) FROM splits WHERE split = 'train'")[0][0]
    assert users == 943 and len(ds) > users, (len(ds), users)
    assert refs == [f"windows:sid_version={v}"]
    row = ds[0]
    assert row["prompt"][-1]["role"] == "user" and row["target_sid"] == row["target_sids"][0]
    assert len(set(ds["prompt_id"])) == len(ds)


def test_sidreasoner_reward_schedule():
    from curation.rewards import REWARD_FUNCS
    from storage.sid import format_sid

    t = format_sid((1, 2, 3))
    fn = REWARD_FUNCS["sidreasoner"]
    comps = [f"<think>\nwhy\n</think>\n\n{t}",                     # exact + format
             f"<think>\nwhy\n</think>\n\n{format_sid((1, 2, 0))}",  # two levels + format
             f"<think>\nwhy\n</think>\n\n{format_sid((1, 0, 0))}",  # one level + format
             f"{t}",                                                # no </think>: 0
             "<think>\nwhy\n</think>\n\nno sid"]                    # nothing to match, malformed answer
    got = fn(None, comps, target_sid=[t] * 5, think=[True] * 5)
    assert got == pytest.approx([1.1, 0.6, 0.35, 0.0, 0.0])


def test_beam_rank_reward_penalises_higher_ranked_misses_more():
    from curation.rewards import REWARD_FUNCS
    from storage.sid import format_sid

    t, w = format_sid((1, 2, 3)), format_sid((0, 0, 0))
    comps = [f"<think>\n\n</think>\n\n{s}" for s in (w, t, w, w)]   # one prompt, 4 beams in beam order
    got = REWARD_FUNCS["beam_rank"](None, comps, target_sid=[t] * 4, num_generations=4)
    assert got[1] == 1.0 and got[0] < got[2] < got[3] < 0
    norm = sum(1 / math.log2(j + 2) for j in range(4))
    assert got[0] == pytest.approx(-1 / norm)
