"""Bad input at every CLI entry point: each case runs the real `recot` main() and must end with the
expected exit code, a message naming the file / row / field / option, and no traceback. The table in
docs/reliability.md lists these cases with the message a user sees."""
from __future__ import annotations

from pathlib import Path

import pytest
from reliability_util import assert_clean_error, build_catalog, run_cli, write_generic_files

ROOT = Path(__file__).resolve().parents[2]
SFT = str(ROOT / "configs" / "train" / "sft.cpu.yaml")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from storage.workspace import Workspace

    base = tmp_path_factory.mktemp("bad")
    ws = base / "ws"
    build_catalog(Workspace.open(ws), n_items=30, n_users=10)
    g = write_generic_files(base / "g", n_items=20, n_inter=100, n_users=10)
    files = {
        "bad.yaml": "backend: [unclosed\n",
        "t_unknown.yaml": "backend: openai\nmodel: x\nmax_concurency: 3\n",
        "t_type.yaml": "backend: openai\nmodel: x\nmax_concurrency: lots\n",
        "t_list.yaml": "- a\n- b\n",
        "t_enum.yaml": "backend: openia\nmodel: x\n",
        "c_unknown.yaml": "name: x\nfilters:\n  - type: nope\n",
        "c_badparam.yaml": "name: x\nfilters:\n  - type: length\n    params: {min_chars: many}\n",
        "c_extra.yaml": "name: x\nfiltrs: []\n",
        "tr_unknown.yaml": "max_steps: 3\nbogus_key: 1\n",
        "tr_type.yaml": "max_steps: three\n",
        "vec.csv": "a,b\n",
    }
    for name, text in files.items():
        (base / name).write_text(text)
    return {"base": base, "ws": str(ws), **{k: str(v) for k, v in g.items()}}


def _args(env, spec):
    return [str(a).format(**env) for a in spec]


W = ["-w", "{ws}"]
GEN = ["ingest", "generic", "--items", "{items}", "--interactions", "{interactions}"]
# (id, args, exit code, substrings the error must contain)
CASES = [
    ("unknown_command", ["nosuch"], 2, ["No such command 'nosuch'"]),
    ("missing_required_option", ["ingest", "generic", *W], 2, ["Missing option '--items'"]),
    ("non_integer_option", [*GEN, "--kcore", "abc", *W], 2, ["--kcore", "valid integer"]),
    ("bad_on_error_enum", [*GEN, "--on-error", "ignore", *W], 2, ["on_error must be 'raise' or 'skip'"]),
    ("bad_map_field", [*GEN, "--map", "usr=uid", *W], 2, ["bad --map field 'usr'"]),
    ("bad_map_syntax", [*GEN, "--map", "user", *W], 2, ["expected FIELD=COLUMN"]),
    ("map_to_missing_column", [*GEN, "--map", "user=uid", *W], 2,
     ["interactions.csv, line 1, field 'uid'", "found user_id"]),
    ("ingest_missing_file", ["ingest", "generic", "--items", "{base}/nope.csv", "--interactions",
                             "{interactions}", *W], 2, ["nope.csv", "--items", "file not found"]),
    ("amazon_bad_version", ["ingest", "amazon", "{items}", "--version", "2030", *W], 2,
     ["unknown Amazon dump version '2030'"]),
    ("movielens_missing_folder", ["ingest", "movielens", "{base}/nofolder", *W], 2, ["nofolder: folder not found"]),
    ("dataset_not_found", ["datasets", "show", "nope@v1", *W], 4, ["dataset nope@v1 not found"]),
    ("bad_dataset_ref", ["datasets", "show", "nope@vx", *W], 2, ["bad dataset reference 'nope@vx'"]),
    ("export_bad_format", ["datasets", "export", "catalog:split", "--out", "{base}/o", "--format", "csv", *W], 2,
     ["Invalid value for '--format'", "'csv' is not one of 'hf', 'parquet'"]),
    ("export_unknown_dataset", ["datasets", "export", "nope", "--out", "{base}/o2", *W], 4, ["dataset nope not found"]),
    ("export_unknown_table", ["datasets", "export", "catalog:nope", "--out", "{base}/o3", *W], 4,
     ["unknown catalog table 'nope'"]),
    ("workspace_missing", ["workspace", "info", "-w", "{base}/nows"], 1, ["no workspace at"]),
    ("synth_unknown_task", ["synth", "run", "r9", *W], 4, ["unknown synthesis task 'r9'"]),
    ("synth_unknown_option", ["synth", "run", "align_item", "-O", "bogus=1", *W], 2, ["has no option 'bogus'"]),
    ("synth_option_syntax", ["synth", "run", "align_item", "-O", "bogus", *W], 2, ["--option expects NAME=VALUE"]),
    ("synth_bad_mode_enum", ["synth", "run", "r3_recommend", "--mode", "sideways", *W], 2,
     ["Invalid value for '--mode'", "'sideways' is not one of 'hint', 'blind'"]),
    ("teacher_yaml_missing", ["synth", "run", "r3_recommend", "--teacher", "{base}/none.yaml", *W], 2,
     ["teacher config", "none.yaml not found"]),
    ("teacher_yaml_invalid", ["synth", "run", "r3_recommend", "--teacher", "{base}/bad.yaml", *W], 2,
     ["bad.yaml: not valid YAML"]),
    ("teacher_yaml_unknown_key", ["synth", "run", "r3_recommend", "--teacher", "{base}/t_unknown.yaml", *W], 2,
     ["t_unknown.yaml: field 'max_concurency'"]),
    ("teacher_yaml_wrong_type", ["synth", "run", "r3_recommend", "--teacher", "{base}/t_type.yaml", *W], 2,
     ["t_type.yaml: field 'max_concurrency'"]),
    ("teacher_yaml_bad_backend", ["synth", "run", "r3_recommend", "--teacher", "{base}/t_enum.yaml", *W], 2,
     ["t_enum.yaml: field 'backend'"]),
    ("teacher_yaml_not_mapping", ["synth", "run", "r3_recommend", "--teacher", "{base}/t_list.yaml", *W], 2,
     ["expected a mapping of teacher settings"]),
    ("curate_unknown_dataset", ["curate", "--dataset", "nope", *W], 4, ["dataset nope not found"]),
    ("chain_yaml_missing", ["curate", "--dataset", "x", "--chain", "{base}/none.yaml", *W], 2,
     ["none.yaml' not found", "built-in chains"]),
    ("chain_unknown_name", ["curate", "--dataset", "x", "--chain", "nochain", *W], 2, ["chain 'nochain' not found"]),
    ("chain_unknown_filter", ["curate", "--dataset", "x", "--chain", "{base}/c_unknown.yaml", *W], 2,
     ["c_unknown.yaml: filter #1 has unknown type 'nope'"]),
    ("chain_bad_param_type", ["curate", "--dataset", "x", "--chain", "{base}/c_badparam.yaml", *W], 2,
     ["filter #1 (length) has bad params: min_chars"]),
    ("chain_unknown_key", ["curate", "--dataset", "x", "--chain", "{base}/c_extra.yaml", *W], 2,
     ["c_extra.yaml: bad chain config", "filtrs"]),
    ("chain_yaml_invalid", ["curate", "--dataset", "x", "--chain", "{base}/bad.yaml", *W], 2, ["not valid YAML"]),
    ("curate_bad_set", ["curate", "--dataset", "x", "--set", "nodot", *W], 2, ["expected FILTER.PARAM=VALUE"]),
    ("train_config_missing", ["train", "sft", "--config", "{base}/none.yaml", *W], 2,
     ["training config", "none.yaml not found"]),
    ("train_config_unknown_key", ["train", "sft", "--config", "{base}/tr_unknown.yaml", *W], 2,
     ["tr_unknown.yaml: field 'bogus_key'"]),
    ("train_config_wrong_type", ["train", "sft", "--config", "{base}/tr_type.yaml", *W], 2,
     ["tr_type.yaml: field 'max_steps'"]),
    ("train_config_invalid_yaml", ["train", "sft", "--config", "{base}/bad.yaml", *W], 2, ["not valid YAML"]),
    ("train_bad_override", ["train", "sft", "--config", SFT, "noeq", *W], 2, ["override 'noeq': expected KEY=VALUE"]),
    ("train_unknown_dataset", ["train", "sft", "--config", SFT, "--dataset", "nope", *W], 4,
     ["dataset nope not found"]),
    ("sids_vectors_missing", ["sids", "build", "--vectors", "{base}/none.parquet", *W], 2,
     ["none.parquet: file not found"]),
    ("sids_vectors_not_parquet", ["sids", "build", "--vectors", "{base}/vec.csv", *W], 2,
     ["vec.csv: not a readable Parquet file"]),
    ("sids_bad_levels", ["sids", "build", "--levels", "0", *W], 2, ["option --levels"]),
    ("runs_unknown", ["runs", "show", "nope", *W], 4, ["no run 'nope'"]),
]


@pytest.mark.parametrize("case,args,code,needles", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input(env, case, args, code, needles):
    r = run_cli(_args(env, args))
    assert_clean_error(r, code, *[n.format(**env) for n in needles])


def test_bad_input_leaves_workspace_consistent(env):
    """None of the refused commands above wrote anything: no dataset version, workspace check passes."""
    from storage.workspace import Workspace

    for _, args, _, _ in CASES:
        run_cli(_args(env, args))
    assert not Workspace.open(env["ws"], create=False).query("SELECT * FROM dataset_versions")
    r = run_cli(["workspace", "check", "-w", env["ws"]])
    assert r.code == 0, r.text
