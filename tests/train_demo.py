"""A tiny regression trained by ecrflow.train.Trainer; run directly or with `accelerate launch` by
test_train.py (not collected by pytest: no test_ prefix)."""

import json
import sys

import torch
from torch import nn

from ecrflow.train import TrainConfig, Trainer


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inner = nn.Linear(4, 1)

    def forward(self, batch, task="rec"):
        pred = self.inner(batch["x"]).squeeze(-1)
        return {"loss": ((pred - batch["y"]) ** 2).mean()}


def data(n=40):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def collate(items):
    return {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}


def run(work_dir, *, epochs=3, batch_size=8, grad_accum=2, checkpoint_every=1, stop_at=None, fingerprint="fp"):
    model = Regression()
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, grad_accum=grad_accum, lr=0.05, warmup_steps=2, seed=3,
                      precision="fp32", checkpoint_every=checkpoint_every)
    trainer = Trainer(model, model, cfg, work_dir, fingerprint, task="rec")
    steps = []

    def on_step(state):
        steps.append(state.step)
        if stop_at is not None and state.step == stop_at:
            raise KeyboardInterrupt("simulated kill")

    result = trainer.fit(data(), collate, evaluate=lambda: {"loss": 0.0}, on_step=on_step)
    return model, result, steps, trainer


if __name__ == "__main__":
    model, result, steps, trainer = run(sys.argv[1])
    if trainer.accelerator.is_main_process:
        out = {"weight": model.inner.weight.detach().tolist(), "steps": result.state.step,
               "processes": trainer.accelerator.num_processes}
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)
