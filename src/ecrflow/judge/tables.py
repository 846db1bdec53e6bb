"""Table 2 (mean judge scores per system and metric, the paper's numbers beside them, agreement between
judges) and the statistics behind it: Cohen's kappa on per-context rankings, bootstrap confidence
intervals."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .scoring import METRIC_KEYS

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
    """Table order: UniCRS, the LLM baselines, the ECR generators, the RL generators."""
    for rank, prefix in enumerate(("unicrs", "llm_", "ecr_", "rl_")):
        if system.startswith(prefix):
            return rank, system
    return 4, system


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
    """Long judge rows -> {(dialog_id, turn): {system: {metric: score}}}."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[(r["dialog_id"], int(r["turn"]))][r["system"]][r["metric"]] = r["score"]
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


def table2_rows(judges: dict[str, list[dict]], paper_names: dict[str, str], *, seed: int = 0) -> list[dict]:
    """Rows per (judge, system): n contexts, the mean of each metric with a 95 % bootstrap interval over
    contexts, and the paper's value for the row the system stands for; then one kappa row per pair of
    judges (metric columns = kappa on rankings)."""
    out = []
    for judge, rows in judges.items():
        by = nested(rows)
        systems = sorted(dict.fromkeys(r["system"] for r in rows), key=system_order)
        for system in systems:
            row = {"judge": judge, "system": system, "paper_row": paper_names.get(system, "")}
            keys = [k for k in by if system in by[k]]
            row["n"] = len(keys)
            for j, m in enumerate(METRIC_KEYS):
                vals = [by[k][system][m] for k in keys]
                row[m] = round(float(np.mean(vals)), 3) if vals else None
                lo, hi = bootstrap_ci(vals, seed=seed)
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = round(lo, 3), round(hi, 3)
                paper = PAPER_TABLE2.get(row["paper_row"])
                row[f"paper_{m}"] = paper[j] if paper else None
            out.append(row)
    names = list(judges)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = nested(judges[names[i]]), nested(judges[names[j]])
            row = {"judge": f"{names[i]} vs {names[j]}", "system": "cohen_kappa_of_rankings", "paper_row": ""}
            for m in METRIC_KEYS:
                k, n = ranking_kappa(a, b, m)
                row[m] = round(k, 3)
                row["n"] = n
            out.append(row)
    return out
