"""The one training loop of every stage (accelerate): accumulation, warmup/decay, bf16, checkpoints with
resume, best-model selection on validation, per-epoch metrics, deterministic seeding.

Fixes of the reference (ECR_SPEC 5, 8.14): the optimiser steps after every ``grad_accum`` micro-batches
(the reference also stepped at batch 0), no ``retain_graph``; the learning-rate schedule counts optimiser
steps; a killed job resumes from its last checkpoint instead of starting over.

Checkpoints live in a work directory that is *not* a Snakemake output (Snakemake deletes the outputs of a
failed job; the checkpoint must survive the kill). Each checkpoint records a fingerprint of the run's
parameters and inputs; a checkpoint with another fingerprint is discarded, never resumed. The rule's outputs
are written only after the loop has finished.

Every training rule goes through :func:`run_stage`: the trainer builds its model, data, validation (see
:func:`validation`, :func:`mean_loss`) and output writer into a :class:`Stage`; the runner does the rest
(accelerator, seed, loop, best state, one writer, work-directory cleanup).

Multi-process runs (``accelerate launch --num_processes N``) keep the effective batch: each process takes
``batch_size / N`` samples per micro-batch, so ``batch_size x grad_accum`` samples make one optimiser step
and warmup counts the same steps whatever N is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

if TYPE_CHECKING:  # torch is imported where it is used: the rule steps import this module for multi_process
    import torch
    from torch import nn


log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
BEST = "best.safetensors"
CURVE_POINTS = 200


@dataclass(frozen=True)
class TrainSettings:
    """``config["train"]``: shared by every training stage."""

    precision: str = "auto"  # auto (bf16 on a GPU that supports it) | bf16 | fp32
    checkpoint_every: int = 0  # optimiser steps between checkpoints (0: at epoch ends only)


@dataclass(frozen=True, kw_only=True)
class StageSettings:
    """The keys of a training stage's config section that the loop reads; each stage's section dataclass
    extends it with its own."""

    epochs: int
    batch_size: int  # samples per micro-batch over all processes
    grad_accum: int
    eval_batch_size: int
    lr: float
    warmup_steps: int
    seed: int
    select_metric: str = "loss"  # validation metric for the best model: "loss" is minimised, others maximised
    # AdamW epsilon: torch's default; the reference's prompt-encoder stages use transformers' AdamW (1e-6)
    adam_epsilon: float = 1e-8


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int  # samples per micro-batch over all processes
    grad_accum: int
    lr: float
    warmup_steps: int
    seed: int
    weight_decay: float = 0.01
    precision: str = "auto"  # auto (bf16 on a GPU that supports it) | bf16 | fp32
    checkpoint_every: int = 0  # optimiser steps between checkpoints (0: at epoch ends only)
    select_metric: str = "loss"  # validation metric for the best model: "loss" is minimised, others maximised
    max_grad_norm: float | None = None
    adam_epsilon: float = 1e-8

    @classmethod
    def from_config(cls, section: StageSettings, train: TrainSettings) -> "TrainConfig":
        return cls(epochs=section.epochs, batch_size=section.batch_size, grad_accum=section.grad_accum,
                   lr=section.lr, warmup_steps=section.warmup_steps, seed=section.seed,
                   precision=train.precision, checkpoint_every=train.checkpoint_every,
                   select_metric=section.select_metric, adam_epsilon=section.adam_epsilon)


@dataclass
class TrainState:
    fingerprint: str
    epoch: int = 0  # epochs finished
    batch: int = 0  # micro-batches done in the current epoch
    step: int = 0  # optimiser steps
    best: float | None = None
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)
    loss_sum: float = 0.0  # training loss of the current epoch so far (kept across a resume)
    loss_batches: int = 0
    curve: list = field(default_factory=list)  # [step, mean training loss since the previous point]
    curve_sum: float = 0.0
    curve_batches: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=1)


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    state: TrainState
    resumed_from: int | None
    seconds: float
    before: dict | None = None  # validation of the untrained model, where the stage asks for it (run_stage)

    def summary(self, **extra) -> dict:
        """The training history as a rule's metrics JSON: best epoch and metric, per-epoch records."""
        st = self.state
        return {"best_epoch": st.best_epoch, "best_metric": st.best, "epochs": st.history, "curve": st.curve,
                "optimizer_steps": st.step, "resumed_from_step": self.resumed_from,
                "seconds": round(self.seconds, 1), **extra}


def multi_process(step):
    """Marks a rule step that is correct as one of several accelerate processes (the shared Trainer splits
    each micro-batch over them; only the main process writes outputs): a rule that asks for more than one
    GPU runs it once per GPU (ecrflow.smk.run). The effective batch size (batch_size x grad_accum) and the
    warmup, in optimiser steps, stay the configured ones whatever the GPU count."""
    step.multi_process = True
    return step


def seed_everything(seed: int) -> None:
    import torch
    from accelerate.utils import set_seed

    set_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def mixed_precision(precision: str) -> str:
    import torch

    if precision == "fp32":
        return "no"
    if precision == "bf16":
        return "bf16"
    if precision == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")


def make_accelerator(precision: str):
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # Several processes wrap the model in DDP, which fails on trainable parameters a step does not use (a
    # variant without emotions, the critic's unused pooler): let it look for them.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=mixed_precision(precision), cpu=not torch.cuda.is_available(),
                       kwargs_handlers=[ddp])


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (as the reference)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if ("bias" in name or "LayerNorm.weight" in name) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _better(value: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _save_safetensors(path: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))
    tmp.replace(path)


def load_safetensors(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


class Trainer:
    """Trains ``model.prompt``-style modules: ``model(batch, task)`` returns ``{"loss": ...}``, and
    ``trainable`` is the sub-module whose parameters are optimised and checkpointed."""

    def __init__(self, model: nn.Module, trainable: nn.Module, cfg: TrainConfig, work_dir, fingerprint: str, *,
                 task: str, accelerator=None, params_only: bool = False):
        self.cfg = cfg
        # params_only: checkpoint only the parameters that train (a LoRA adapter, not its frozen base; a
        # fine-tuned LM once, not once more per tied weight, which safetensors refuses).
        self.params_only = params_only
        self.task = task
        self.work_dir = Path(work_dir)
        self.fingerprint = fingerprint
        self.accelerator = accelerator or make_accelerator(cfg.precision)
        self.model = model
        self.trainable = trainable
        n_proc = self.accelerator.num_processes
        if cfg.batch_size % n_proc:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {n_proc} processes")
        self.per_device = cfg.batch_size // n_proc

    # -- checkpoints --------------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        if self.params_only:
            return {n: p for n, p in self.trainable.named_parameters() if p.requires_grad}
        return self.trainable.state_dict()

    def load_trainable(self, state: dict[str, torch.Tensor]) -> None:
        if not self.params_only:
            self.trainable.load_state_dict(state)
            return
        missing = set(self.trainable_state()) - set(state)
        if missing:
            raise ValueError(f"checkpoint lacks trained parameters: {sorted(missing)[:5]}")
        self.trainable.load_state_dict(state, strict=False)

    def _ckpt(self) -> Path:
        return self.work_dir / CHECKPOINT

    def _load_checkpoint(self, optimizer, scheduler) -> TrainState | None:
        import torch

        d = self._ckpt()
        state_file = d / "trainer_state.json"
        if not state_file.exists():
            return None
        state = TrainState(**json.loads(state_file.read_text()))
        if state.fingerprint != self.fingerprint:
            log.warning("discarding checkpoint in %s: it belongs to other parameters or inputs", d)
            return None
        self.load_trainable(load_safetensors(d / "trainable.safetensors"))
        optimizer.load_state_dict(torch.load(d / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(d / "scheduler.pt", weights_only=True))
        return state

    def _save_checkpoint(self, state: TrainState, optimizer, scheduler) -> None:
        import torch

        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            tmp = self.work_dir / (CHECKPOINT + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            _save_safetensors(tmp / "trainable.safetensors", self.trainable_state())
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "trainer_state.json").write_text(state.to_json())
            final = self._ckpt()
            old = self.work_dir / (CHECKPOINT + ".old")
            if final.exists():
                final.rename(old)
            tmp.rename(final)  # the state file is last in, so a half-written checkpoint is never read
            if old.exists():
                shutil.rmtree(old)
        acc.wait_for_everyone()

    # -- loop ---------------------------------------------------------------------------------------------
    def fit(self, train_data: list, collate: Callable, evaluate: Callable[[], dict] | None = None,
            on_step: Callable[[TrainState], None] | None = None) -> FitResult:
        import numpy as np
        import torch
        from torch.utils.data import DataLoader, Subset
        from transformers import get_linear_schedule_with_warmup

        from .progress import Progress

        cfg, acc = self.cfg, self.accelerator
        t0 = time.time()
        seed_everything(cfg.seed)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.model.to(acc.device)
        n_batches = math.ceil(len(train_data) / cfg.batch_size)
        if n_batches == 0:
            raise ValueError("no training samples")
        updates_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total = cfg.epochs * updates_per_epoch
        optimizer = torch.optim.AdamW(param_groups(self.trainable, cfg.weight_decay), lr=cfg.lr, eps=cfg.adam_epsilon)
        scheduler = get_linear_schedule_with_warmup(optimizer, min(cfg.warmup_steps, total), total)
        curve_every = max(1, total // CURVE_POINTS)  # the loss curve of the report: at most ~CURVE_POINTS points
        self.scheduler = scheduler  # exposed for inspection (the learning rate of the current step)
        state = self._load_checkpoint(optimizer, scheduler)
        resumed_from = state.step if state else None
        if state is None:
            state = TrainState(self.fingerprint)
        else:
            log.info("resumed from step %d (epoch %d, batch %d)", state.step, state.epoch, state.batch)
        model, optimizer = acc.prepare(self.model, optimizer)
        log.info("%d samples, %d micro-batches of %d per epoch, %d optimiser steps in all, %s precision, %d "
                 "process(es)", len(train_data), n_batches, cfg.batch_size, total, mixed_precision(cfg.precision),
                 acc.num_processes)
        bar = Progress(total, initial=state.step, enabled=acc.is_main_process, desc=self.task, logger=log)
        while state.epoch < cfg.epochs:
            epoch = state.epoch
            order = np.random.default_rng(cfg.seed + epoch).permutation(len(train_data)).tolist()
            loader = acc.prepare(DataLoader(Subset(train_data, order), batch_size=self.per_device,
                                            shuffle=False, collate_fn=collate))
            if state.batch:
                loader = acc.skip_first_batches(loader, state.batch)
            model.train()
            for i, batch in enumerate(loader, start=state.batch):
                group_start = (i // cfg.grad_accum) * cfg.grad_accum
                group_size = min(cfg.grad_accum, n_batches - group_start)
                is_update = i + 1 == group_start + group_size
                ctx = acc.no_sync(model) if not is_update else contextlib.nullcontext()
                with ctx:
                    with acc.autocast():
                        loss = model(batch, self.task)["loss"]
                    acc.backward(loss / group_size)
                state.loss_sum += loss.item()
                state.loss_batches += 1
                state.curve_sum += loss.item()
                state.curve_batches += 1
                state.batch = i + 1
                if is_update:
                    if cfg.max_grad_norm:
                        acc.clip_grad_norm_(self.trainable.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    state.step += 1
                    if state.step % curve_every == 0 or state.step == total:
                        state.curve.append([state.step, state.curve_sum / max(state.curve_batches, 1)])
                        state.curve_sum, state.curve_batches = 0.0, 0
                    bar.update(1, epoch=epoch, loss=state.loss_sum / state.loss_batches)
                    if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.batch < n_batches:
                        self._save_checkpoint(state, optimizer, scheduler)
                    if on_step is not None:
                        on_step(state)
            record = {"epoch": epoch, "step": state.step, "train_loss": state.loss_sum / max(state.loss_batches, 1),
                      "lr": scheduler.get_last_lr()[0]}
            if evaluate is not None:
                model.eval()
                record["valid"] = evaluate()
            if evaluate is None:
                metric, mode = -epoch, "loss"  # no validation: the last epoch is the best
            else:
                if cfg.select_metric not in record["valid"]:
                    raise ValueError(f"select_metric {cfg.select_metric!r} is not a validation metric "
                                     f"({', '.join(sorted(record['valid']))})")
                metric, mode = record["valid"][cfg.select_metric], cfg.select_metric
            if state.best_epoch is None or (metric is not None and _better(metric, state.best, mode)):
                state.best, state.best_epoch = metric, epoch
                if acc.is_main_process:
                    _save_safetensors(self.work_dir / BEST, self.trainable_state())
            state.history.append(record)
            log.info("epoch %d: %s", epoch, json.dumps(record))
            state.epoch, state.batch, state.loss_sum, state.loss_batches = epoch + 1, 0, 0.0, 0
            self._save_checkpoint(state, optimizer, scheduler)
        bar.close()
        acc.wait_for_everyone()
        best = load_safetensors(self.work_dir / BEST)
        return FitResult(best, state, resumed_from, time.time() - t0)

    def cleanup(self) -> None:
        """Remove the work directory once the rule's outputs are written."""
        if self.accelerator.is_main_process:
            remove_work_dir(self.work_dir)


def claim_work_dir(work_dir, fingerprint: str) -> Path:
    """The work directory of a trainer that keeps its own checkpoints (TRL's GRPO): emptied first when it
    holds another run's (other parameters or inputs: never resumed), then marked with this run's."""
    work = Path(work_dir)
    mark = work / "fingerprint"
    if mark.exists() and mark.read_text() != fingerprint:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    mark.write_text(fingerprint)
    return work


def remove_work_dir(work_dir) -> None:
    """Checkpoints are no outputs: gone once the outputs are written, so that a rerun starts afresh."""
    shutil.rmtree(work_dir, ignore_errors=True)


def fingerprint(params: dict, inputs: list) -> str:
    """Hash of a run's parameters and its input files (path, size, modification time). A folder (a local
    model) counts with every file in it: a rebuilt frozen model must not resume a checkpoint made on the old
    one."""
    import hashlib

    items = []
    for p in inputs:
        path = Path(p)
        for f in sorted(x for x in path.rglob("*") if x.is_file()) if path.is_dir() else [path]:
            st = f.stat()
            items.append([str(f), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"params": params, "inputs": items}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- one training stage ---------------------------------------------------------------------------------------

@dataclass
class Stage:
    """What a trainer hands :func:`run_stage`: the model, its data and validation, and how to write the
    rule's outputs from the fit."""

    model: nn.Module  # model(batch, task) -> {"loss": ...}
    trainable: nn.Module  # the part that is optimised, checkpointed and loaded with the best state
    train_data: list
    collate: Callable
    write: Callable[[FitResult], None]  # the rule's outputs; called on the main process only
    evaluate: Callable[[], dict] | None = None  # per-epoch validation (see validation); None: last epoch is best
    params_only: bool = False  # see Trainer
    validate_before: bool = False  # also validate the untrained model: FitResult.before


def run_stage(build: Callable[..., Stage], *, task: str, cfg: TrainConfig, work_dir, fingerprint: str,
              seed: int | None = None) -> tuple[Stage, FitResult]:
    """One training stage: the accelerator, the seed (``seed``; None where ``build`` seeds itself, right
    before the model's initialisation), ``build(accelerator)``, the shared loop with checkpoints under
    ``work_dir``, the best state loaded into ``stage.trainable``, ``stage.write`` on the main process, then
    the work directory removed (the outputs exist: a rerun must not resume)."""
    acc = make_accelerator(cfg.precision)
    if seed is not None:
        seed_everything(seed)
    stage = build(acc)
    before = None
    if stage.validate_before:
        stage.model.to(acc.device)
        before = stage.evaluate()
        log.info("validation before training: %s", json.dumps(before))
    trainer = Trainer(stage.model, stage.trainable, cfg, work_dir, fingerprint, task=task, accelerator=acc,
                      params_only=stage.params_only)
    result = trainer.fit(stage.train_data, stage.collate, evaluate=stage.evaluate)
    result.before = before
    trainer.load_trainable(result.best_state)
    if acc.is_main_process:  # one writer (a multi-GPU run starts the rule once per GPU)
        stage.write(result)
    acc.wait_for_everyone()
    trainer.cleanup()
    return stage, result


def validation(data: Sequence, measure: Callable[[Sequence], dict], *, empty: dict) -> Callable[[], dict]:
    """A stage's per-epoch validation: ``measure(data)`` (a :func:`mean_loss`, or predictions scored by a
    metric) without gradients; ``empty`` (its metrics as None) when there is no validation data."""
    def evaluate() -> dict:
        import torch

        with torch.no_grad():
            return measure(data) if len(data) else dict(empty)
    return evaluate


def batches(data: Sequence, collate: Callable, batch_size: int, device) -> Iterable[dict]:
    """``data`` in order, collated ``batch_size`` at a time and moved to ``device``: no DataLoader, so no
    draw from the global RNG (a DataLoader takes one per iteration for its workers' seed)."""
    import torch

    for lo in range(0, len(data), batch_size):
        yield {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in collate(data[lo:lo + batch_size]).items()}


def mean_loss(model: nn.Module, batches: Iterable[dict], *, task: str, accelerator,
              weight: Callable[[dict], int] | None = None, sharded: bool = False) -> float:
    """The mean of ``model(batch, task)["loss"]`` over ``batches``, each weighted by ``weight(batch)`` (its
    labelled tokens, say; default 1). ``sharded``: the batches are this process's share of a loader prepared
    by the accelerator, so the sums are gathered over the processes."""
    import torch

    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        with torch.no_grad(), accelerator.autocast():
            loss = model(batch, task)["loss"]
        w = 1 if weight is None else weight(batch)
        if sharded:
            total += accelerator.gather_for_metrics((loss * w)[None]).sum().item()
            count += int(accelerator.gather_for_metrics(torch.tensor([w], device=loss.device)).sum().item())
        else:
            total, count = total + loss.item() * w, count + w
    return total / max(count, 1)
