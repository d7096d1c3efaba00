"""`recot train`: a run without -c says which defaults it uses; training shows one progress bar with steps and
loss, driven by a TrainerCallback that every Trainer built during the command receives."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from typer.testing import CliRunner

from storage.workspace import Workspace
from trainers.common import TrainResult
from ui.cli import app


def test_sft_without_config_names_its_defaults_and_shows_steps_and_loss(tmp_path, monkeypatch):
    import transformers.trainer as hf_trainer
    from transformers import TrainerControl, TrainerState

    import trainers.registry as registry
    from trainers.sft import SFTTrainConfig

    before = list(hf_trainer.DEFAULT_CALLBACKS)
    seen: dict = {}

    def fake_train(ws, cfg):
        # what transformers.Trainer.__init__ does with DEFAULT_CALLBACKS, then a 3-step loop
        cbs = [c for c in hf_trainer.DEFAULT_CALLBACKS if c not in before]
        seen["callbacks"] = len(cbs)
        args = SimpleNamespace(max_steps=cfg.max_steps)
        state, control = TrainerState(), TrainerControl()
        state.max_steps = cfg.max_steps
        for cb in cbs:
            cb.on_train_begin(args, state, control)
        for step in range(1, cfg.max_steps + 1):
            state.global_step = step
            for cb in cbs:
                cb.on_step_end(args, state, control)
                cb.on_log(args, state, control, logs={"loss": 2.5 / step})
        return TrainResult(run_id="r1", out_dir=Path(tmp_path / "m"), metrics={"loss": {"first": 2.5, "last": 0.83}})

    monkeypatch.setattr(registry, "get_trainer", lambda name: (SFTTrainConfig, fake_train))
    Workspace.open(tmp_path / "ws")
    res = CliRunner().invoke(app, ["train", "sft", "-d", "cot", "--model", "tiny", "-w", str(tmp_path / "ws")],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, (res.output, res.exception)
    assert "no --config: using the built-in sft defaults — a 3-step smoke config (model tiny" in res.output
    assert "3/3" in res.output and "loss 0.8333" in res.output
    assert seen["callbacks"] == 1
    assert hf_trainer.DEFAULT_CALLBACKS == before  # restored after the command
