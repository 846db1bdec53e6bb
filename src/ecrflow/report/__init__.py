"""Training curves for the Snakemake report: one figure per trained stage from the stage's metrics JSON
(training loss per logged step, validation metrics per epoch) or, for RL, from its per-step log (reward
mean and spread, KL, completion length)."""

from __future__ import annotations

import math

from ..io import atomic_path, iter_jsonl, read_json

MAX_VALID_PANELS = 4


def _numeric_items(d: dict, prefix: str = "") -> dict[str, float]:
    """Flatten a nested dict to name -> number (nested keys joined by '/'); None and NaN dropped."""
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numeric_items(v, name + "/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None and math.isfinite(v):
            out[name] = float(v)
    return out


def valid_series(epochs: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Validation metric -> [(epoch, value)], for every numeric metric any epoch reports."""
    series: dict[str, list[tuple[int, float]]] = {}
    for e in epochs:
        for name, v in _numeric_items(e.get("valid") or {}).items():
            series.setdefault(name, []).append((e["epoch"], v))
    return series


def pick_metrics(series: dict[str, list], limit: int = MAX_VALID_PANELS) -> list[str]:
    """The validation metrics worth a panel: loss first, then the ranking metrics, then the rest."""
    def rank(name: str) -> tuple[int, str]:
        low = name.lower()
        for i, key in enumerate(("loss", "recall@10", "recall@50", "auc", "recall@2", "r2")):
            if key in low:
                return i, name
        return 99, name
    return sorted(series, key=rank)[:limit]


def _figure(n_panels: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(4.2 * n_panels, 3.4), squeeze=False)
    return fig, axes[0]


def _save(fig, out) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def training_figure(metrics_path, out, title: str) -> None:
    """Loss per step (or per epoch, for a stage that logged no step curve) and up to four validation metrics
    per epoch."""
    m = read_json(metrics_path)
    epochs = m.get("epochs") or []
    series = valid_series(epochs)
    shown = pick_metrics(series)
    fig, axes = _figure(1 + max(len(shown), 1))
    ax = axes[0]
    curve = m.get("curve") or []
    if curve:
        ax.plot([s for s, _ in curve], [v for _, v in curve], lw=1)
        ax.set_xlabel("optimiser step")
    else:
        ax.plot([e["step"] for e in epochs], [e["train_loss"] for e in epochs], marker="o")
        ax.set_xlabel("optimiser step (end of epoch)")
    ax.set_title(f"{title}: training loss")
    for ax, name in zip(axes[1:], shown):
        pts = series[name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        if m.get("best_epoch") is not None:
            ax.axvline(m["best_epoch"], color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(f"valid {name}")
    if not shown:
        axes[1].text(0.5, 0.5, "no validation metrics", ha="center", va="center")
        axes[1].set_axis_off()
    _save(fig, out)


def rl_figure(log_path, out, title: str) -> None:
    """GRPO per step: reward mean with its spread, KL to the supervised model, completion length."""
    rows = [r for _, r in iter_jsonl(log_path, expected="an RL log record")]
    steps = [r["step"] for r in rows]
    fig, axes = _figure(3)
    mean = [r.get("reward", float("nan")) for r in rows]
    std = [r.get("reward_std", 0.0) for r in rows]
    axes[0].plot(steps, mean)
    axes[0].fill_between(steps, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], alpha=0.2)
    axes[0].set_title(f"{title}: critic reward (mean, std)")
    axes[1].plot(steps, [r.get("kl", float("nan")) for r in rows])
    axes[1].set_title("KL to the supervised model")
    axes[2].plot(steps, [r.get("completion_length", float("nan")) for r in rows])
    axes[2].set_title("completion length (tokens)")
    for ax in axes:
        ax.set_xlabel("step")
    _save(fig, out)

