"""Ranking metrics for recommendation (ECR_SPEC 6.1).

One evaluation sample is one (context, gold item) pair; a context with several gold items gives several
samples with the same ranking, as in the reference.
"""

from __future__ import annotations

import numpy as np


def gold_ranks(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """0-based rank of each sample's gold column in its score row (ties ranked pessimistically: an item
    that scores the same as the gold one counts as ahead of it, so ties never inflate recall)."""
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    gold_score = scores[np.arange(len(gold)), gold]
    ahead = (scores >= gold_score[:, None]).sum(axis=1) - 1
    return ahead


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Share of samples whose gold item is in the top k (0.0 for no samples)."""
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if len(ranks) else 0.0


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(np.where(ranks < k, 1.0 / (ranks + 1), 0.0).mean())


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2), 0.0).mean())
