"""The shared training loop: accumulation, schedule, resume after a kill, multi-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ecrflow.train import TrainConfig, Trainer, fingerprint

sys.path.insert(0, str(Path(__file__).parent))
import train_demo  # noqa: E402


def test_accumulation_steps_after_every_group_and_at_the_end(tmp_path):
    # 40 samples / batch 8 = 5 micro-batches; accumulation 2 -> steps after batches 2, 4 and 5 (the last,
    # partial group): 3 per epoch, never at batch 0 (the reference's off-by-one stepped at 0, 1, 3, 5).
    _, result, steps, _ = train_demo.run(tmp_path, epochs=2)
    assert result.state.step == 6 and steps == [1, 2, 3, 4, 5, 6]


def test_warmup_then_linear_decay(tmp_path):
    model = train_demo.Regression()
    cfg = TrainConfig(epochs=2, batch_size=8, grad_accum=1, lr=1.0, warmup_steps=2, seed=0, precision="fp32")
    trainer = Trainer(model, model, cfg, tmp_path, "fp", task="rec")
    lrs = []
    trainer.fit(train_demo.data(), train_demo.collate,
                on_step=lambda s: lrs.append(round(trainer_lr(trainer), 4)))
    # 10 steps in all: lr rises to 1 over 2 steps, then falls linearly to 0 at step 10.
    assert lrs[:3] == [0.5, 1.0, 0.875] and lrs[-1] == 0.0


def trainer_lr(trainer):
    return trainer.scheduler.get_last_lr()[0]


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_identical(tmp_path):
    full, full_result, _, _ = train_demo.run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        train_demo.run(tmp_path / "killed", stop_at=4)
    assert (tmp_path / "killed" / "checkpoint" / "trainer_state.json").exists()
    resumed, result, steps, _ = train_demo.run(tmp_path / "killed")
    assert result.resumed_from == 4 and steps[0] == 5  # no step repeated
    assert torch.equal(full.inner.weight, resumed.inner.weight)
    assert result.state.history == full_result.state.history


def test_a_checkpoint_of_other_parameters_is_not_resumed(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_demo.run(tmp_path, stop_at=2)
    _, result, steps, _ = train_demo.run(tmp_path, fingerprint="other")
    assert result.resumed_from is None and steps[0] == 1


def test_fingerprint_follows_inputs_and_params(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x")
    a = fingerprint({"lr": 1}, [f])
    assert a == fingerprint({"lr": 1}, [f]) and a != fingerprint({"lr": 2}, [f])
    f.write_text("xy")
    assert a != fingerprint({"lr": 1}, [f])


def test_two_processes_with_gloo_train_the_same_model(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on a machine without GPUs runs two CPU processes (gloo): each process takes half of every micro-batch, so
    the effective batch and the number of optimiser steps equal the single-process run."""
    single = tmp_path / "single.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    demo = str(Path(train_demo.__file__))
    subprocess.run([sys.executable, demo, str(tmp_path / "w1"), str(single)], check=True, env=env)
    double = tmp_path / "double.json"
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", demo,
                    str(tmp_path / "w2"), str(double)], check=True, env=env, timeout=300)
    a, b = json.loads(single.read_text()), json.loads(double.read_text())
    assert b["processes"] == 2 and a["processes"] == 1
    assert a["steps"] == b["steps"]
    assert torch.allclose(torch.tensor(a["weight"]), torch.tensor(b["weight"]), atol=1e-4)


def test_run_stage_writes_with_the_best_state_then_removes_the_work_dir(tmp_path):
    """The runner: validation before training, the best epoch's state in the model when the outputs are
    written, the work directory gone afterwards; mean_loss weights each batch."""
    from ecrflow.train import Stage, batches, mean_loss, run_stage, validation

    seen = {}

    def build(acc):
        model = train_demo.Regression()
        valid = train_demo.data(16)

        def measure(va):
            return {"loss": mean_loss(model, batches(va, train_demo.collate, 4, acc.device), task="rec",
                                      accelerator=acc, weight=lambda b: len(b["y"]))}

        def write(result):
            seen["weight"] = model.inner.weight.detach().clone()
            seen["work_dir_exists"] = (tmp_path / "work").exists()

        return Stage(model, model, train_demo.data(), train_demo.collate, write,
                     evaluate=validation(valid, measure, empty={"loss": None}), validate_before=True)

    cfg = TrainConfig(epochs=3, batch_size=8, grad_accum=1, lr=0.05, warmup_steps=1, seed=3, precision="fp32")
    stage, result = run_stage(build, task="rec", cfg=cfg, work_dir=tmp_path / "work", fingerprint="fp", seed=3)
    assert seen["work_dir_exists"] and not (tmp_path / "work").exists()
    assert torch.equal(seen["weight"], result.best_state["inner.weight"])
    assert result.before["loss"] > result.state.best
    losses = [e["valid"]["loss"] for e in result.state.history]
    assert result.state.best == min(losses) and result.state.best_epoch == losses.index(min(losses))


def test_stage2_best_epoch_is_chosen_by_the_weighted_validation_loss(tmp_path, monkeypatch):
    """Two validation samples, a liked one (weight 2) and a not-said one (0.5), one eval batch. Epoch 0:
    CE 1 and 3 (mean 2.0, weighted 1.75); epoch 1: CE 2 and 1 (mean 1.5, weighted 2.25). The reference
    selects by the weighted loss, so epoch 0 is best although its unweighted CE is higher."""
    import numpy as np

    from ecrflow.recommend import training
    from ecrflow.recommend.data import Sample

    ces = iter([np.array([1.0, 3.0]), np.array([2.0, 1.0]), np.array([5.0, 5.0])])

    def fake_scores(model, samples, collate, **kw):
        return {"loss": next(ces), "rank": np.array([0, 3]), "ties": np.array([0, 0]), "prob": np.array([0.5, 0.1])}

    monkeypatch.setattr(training, "score_samples", fake_scores)
    valid = [Sample("d", 1, [1], [1], [], [], [], target=0, feedback="like", weight=2.0),
             Sample("d", 1, [1], [1], [], [], [], target=1, feedback="not_said", weight=0.5)]
    section = type("S", (), {"eval_batch_size": 2})()
    evaluate = training.rec_validation(None, valid, None, section, [0, 1], None, ks=(1,))
    model = train_demo.Regression()
    cfg = TrainConfig(epochs=2, batch_size=8, grad_accum=1, lr=0.01, warmup_steps=0, seed=0, precision="fp32")
    result = Trainer(model, model, cfg, tmp_path, "fp", task="rec").fit(train_demo.data(), train_demo.collate,
                                                                         evaluate=evaluate)
    valid_hist = [h["valid"] for h in result.state.history]
    assert [v["loss"] for v in valid_hist] == pytest.approx([1.75, 2.25])
    assert [v["ce"] for v in valid_hist] == pytest.approx([2.0, 1.5])
    assert result.state.best_epoch == 0


def test_validation_loss_is_the_mean_of_batch_losses():
    from ecrflow.recommend.training import validation_loss

    # Batches of 2, each the mean of w * CE: (1 + 3) / 2 = 2 and 0.5 * 4 = 2, so 2. A partial last batch
    # counts as much as a full one (the reference's np.mean over batches): (1 + 4) / 2, not (1 + 1 + 4) / 3.
    assert validation_loss([1.0, 3.0, 4.0], [1.0, 1.0, 0.5], 2) == pytest.approx(2.0)
    assert validation_loss([1.0, 1.0, 4.0], [1.0, 1.0, 1.0], 2) == pytest.approx((1.0 + 4.0) / 2)


def test_adam_epsilon_reaches_the_optimiser(tmp_path):
    from ecrflow.train import StageSettings, TrainSettings

    section = StageSettings(epochs=1, batch_size=8, grad_accum=1, eval_batch_size=8, lr=0.1, warmup_steps=0,
                            seed=0, adam_epsilon=1e-6)
    cfg = TrainConfig.from_config(section, TrainSettings(precision="fp32"))
    assert cfg.adam_epsilon == 1e-6
    model = train_demo.Regression()
    trainer = Trainer(model, model, cfg, tmp_path, "fp", task="rec")
    seen = []
    trainer.fit(train_demo.data(), train_demo.collate,
                on_step=lambda s: seen.append(trainer.scheduler.optimizer.param_groups[0]["eps"]))
    assert seen and set(seen) == {1e-6}
