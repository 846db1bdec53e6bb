"""Statistics shared by the critic, the judge tables and the RL comparison."""

from __future__ import annotations

import numpy as np


def r2_score(y: np.ndarray, p: np.ndarray) -> float:
    """1 - SS_res / SS_tot; NaN when the targets have no variance (there is nothing to explain)."""
    ss_res = float(((y - p) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return float("nan") if ss_tot == 0 else 1.0 - ss_res / ss_tot


def spearman(y: np.ndarray, p: np.ndarray) -> float:
    """Spearman's rank correlation; NaN when either side is constant or there are fewer than two values."""
    from scipy.stats import spearmanr

    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return float("nan")
    return float(spearmanr(y, p).statistic)
