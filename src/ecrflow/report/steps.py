"""The report rule's step (called by workflow/scripts/training_curve.py), named as its rule in
workflow/rules/report.smk."""

from __future__ import annotations

from pathlib import Path

from . import rl_figure, training_figure


def training_curve(source, out, *, name: str) -> None:
    """The figure for one stage: an RL log (``.jsonl``) or a training metrics JSON."""
    if Path(source).suffix == ".jsonl":
        rl_figure(source, out, name)
    else:
        training_figure(source, out, name)
