"""Table 2 (mean judge scores per system and metric, the paper's numbers beside them, agreement between
judges) and the statistics behind it: Cohen's kappa on per-context rankings, bootstrap confidence
intervals."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .contexts import HUMAN, SHUFFLED
from .scoring import METRIC_KEYS

CALIBRATION_ROW = f"calibration: P({HUMAN} > {SHUFFLED})"

# Table 2 of the paper, GPT-4-turbo scorer on 1,000 test samples (ECR_SPEC section 7).
PAPER_TABLE2 = {
    "UniCRS": (0.400, 0.942, 0.793, 0.673, 2.241),
    "GPT-3.5-turbo-instruct": (1.706, 3.043, 3.474, 2.975, 4.182),
    "GPT-3.5-turbo": (2.215, 3.754, 4.782, 4.147, 5.338),
    "Llama 2-7B-Chat": (3.934, 6.030, 5.886, 5.904, 7.129),
    "ECR[DialoGPT]": (4.011, 4.878, 4.736, 5.094, 5.906),
    "ECR[Llama 2-Chat]": (6.826, 7.724, 6.702, 7.653, 8.063),
}
PAPER_ROWS = {"unicrs": "UniCRS", "ecr_dialogpt": "ECR[DialoGPT]", "ecr_llama": "ECR[Llama 2-Chat]"}


def read_scores(path) -> list[dict]:
    """One judge's long score rows (the judge rule's Parquet output)."""
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def system_order(system: str) -> tuple[int, str]:
    """Table order: UniCRS, the LLM baselines, the ECR generators, Best-of-N, the RL generators, the
    calibration rows."""
    for rank, prefix in enumerate(("unicrs", "llm_", "ecr_", "bon_", "rl_", HUMAN)):
        if system.startswith(prefix):
            return rank, system
    return 6, system


def score_of(row: dict) -> float:
    """A score row's value: the expectation over the judge's digit distribution where the judge gave one
    (judge.scoring: expected), else its greedy digit."""
    e = row.get("expected")
    return float(row["score"]) if e is None or (isinstance(e, float) and np.isnan(e)) else float(e)


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two labelings of the same items: (p_o - p_e) / (1 - p_e); 1.0 when both agree
    perfectly with one label only (p_e = 1)."""
    a, b = list(a), list(b)
    if len(a) != len(b) or not a:
        raise ValueError(f"kappa needs two labelings of the same non-empty items, got {len(a)} and {len(b)}")
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = defaultdict(int), defaultdict(int)
    for x in a:
        ca[x] += 1
    for y in b:
        cb[y] += 1
    p_e = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)


def ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks, best first (1 for the highest score; ties share the better rank)."""
    return {s: 1 + sum(v > x for v in scores.values()) for s, x in scores.items()}


def ranking_kappa(a: dict, b: dict, metric: str) -> tuple[float, int]:
    """Kappa between two judges on the rank each gives each system within each context, over the contexts
    both judged (as the paper compares rankings). ``a``/``b``: {(dialog, turn): {system: {metric: score}}}."""
    common = sorted(set(a) & set(b))
    la, lb = [], []
    for key in common:
        systems = sorted(set(a[key]) & set(b[key]))
        ra = ranks({s: a[key][s][metric] for s in systems})
        rb = ranks({s: b[key][s][metric] for s in systems})
        la += [ra[s] for s in systems]
        lb += [rb[s] for s in systems]
    return (cohen_kappa(la, lb) if la else float("nan")), len(common)


def nested(rows: list[dict]) -> dict:
    """Long judge rows -> {(dialog_id, turn): {system: {metric: score}}} (:func:`score_of`)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[(r["dialog_id"], int(r["turn"]))][r["system"]][r["metric"]] = score_of(r)
    return out


def bootstrap_ci(values, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                 stat=np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat`` over the values (resampled with replacement)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    boots = np.array([stat(x[i]) for i in idx])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def discrimination(by: dict, metric: str, *, seed: int = 0, n_boot: int = 1000) -> dict:
    """How often a judge scores the human reply above its word-shuffled copy on one metric (a tie counts
    one half), over the contexts where it scored both, with a 95 % bootstrap interval. 0.5 is chance; a
    judge whose interval reaches 0.5 has shown no signal on that metric."""
    wins = [1.0 if by[k][HUMAN][metric] > by[k][SHUFFLED][metric] else
            0.5 if by[k][HUMAN][metric] == by[k][SHUFFLED][metric] else 0.0
            for k in by if metric in by[k].get(HUMAN, {}) and metric in by[k].get(SHUFFLED, {})]
    lo, hi = bootstrap_ci(wins, seed=seed, n_boot=n_boot)
    rate = float(np.mean(wins)) if wins else float("nan")
    return {"n": len(wins), "rate": rate, "ci_low": lo, "ci_high": hi, "separates": bool(wins) and lo > 0.5}


def score_spearman(a: dict, b: dict, metric: str) -> tuple[float, int]:
    """Spearman correlation of two judges' scores of the same (context, system) replies on one metric."""
    from ..stats import spearman

    keys = [(k, s) for k in sorted(set(a) & set(b)) for s in sorted(set(a[k]) & set(b[k]))
            if metric in a[k][s] and metric in b[k][s]]
    x = np.array([a[k][s][metric] for k, s in keys])
    y = np.array([b[k][s][metric] for k, s in keys])
    return spearman(x, y), len(keys)


def table2_rows(judges: dict[str, list[dict]], paper_names: dict[str, str], *, seed: int = 0,
                fluency: dict | None = None) -> list[dict]:
    """Rows per (judge, system): n contexts, the mean of each metric with a 95 % bootstrap interval over
    contexts, and the paper's value for the row the system stands for. Where the calibration rows were
    judged, one row per judge with its discrimination rate per metric (:func:`discrimination`), and every
    row of that judge names the metrics on which it showed no signal (``no_signal``: its scores there are
    not evidence); ``fluency`` (judge -> scoring.fluency_check) adds the judge model's own log-likelihood
    check to that row (``loglik_*``). Then, per pair of judges, kappa on rankings and Spearman on scores."""
    out = []
    for judge, rows in judges.items():
        by = nested(rows)
        systems = sorted(dict.fromkeys(r["system"] for r in rows), key=system_order)
        calibrated = HUMAN in systems and SHUFFLED in systems
        disc = {m: discrimination(by, m, seed=seed) for m in METRIC_KEYS} if calibrated else {}
        flag = ("uncalibrated" if not calibrated else
                " ".join(m for m in METRIC_KEYS if not disc[m]["separates"]))
        for system in systems:
            row = {"judge": judge, "system": system, "paper_row": paper_names.get(system, "")}
            keys = [k for k in by if system in by[k]]
            row["n"] = len(keys)
            for j, m in enumerate(METRIC_KEYS):
                vals = [by[k][system][m] for k in keys if m in by[k][system]]
                row[m] = round(float(np.mean(vals)), 3) if vals else None
                lo, hi = bootstrap_ci(vals, seed=seed)
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = round(lo, 3), round(hi, 3)
                paper = PAPER_TABLE2.get(row["paper_row"])
                row[f"paper_{m}"] = paper[j] if paper else None
            row["no_signal"] = flag
            out.append(row)
        if calibrated:
            row = {"judge": judge, "system": CALIBRATION_ROW, "paper_row": "",
                   "n": max(d["n"] for d in disc.values())}
            for m in METRIC_KEYS:
                row[m] = round(disc[m]["rate"], 3)
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = round(disc[m]["ci_low"], 3), round(disc[m]["ci_high"], 3)
            row["no_signal"] = flag
            f = (fluency or {}).get(judge)
            if f and f.get("n"):
                row.update(loglik_rate=f["rate"], loglik_ci_low=f["ci_low"], loglik_ci_high=f["ci_high"])
            out.append(row)
    names = list(judges)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = nested(judges[names[i]]), nested(judges[names[j]])
            for label, fn in (("cohen_kappa_of_rankings", ranking_kappa), ("spearman_of_scores", score_spearman)):
                row = {"judge": f"{names[i]} vs {names[j]}", "system": label, "paper_row": ""}
                for m in METRIC_KEYS:
                    k, n = fn(a, b, m)
                    row[m] = round(k, 3)
                    row["n"] = n
                out.append(row)
    return out
