"""Ranking metrics for recommendation (ECR_SPEC 6.1).

One evaluation sample is one (context, gold item) pair; a context with several gold items gives several
samples with the same ranking, as in the reference.
"""

from __future__ import annotations

import numpy as np


def gold_ranks(scores: np.ndarray, gold: np.ndarray, *, ties: bool = False):
    """Where each sample's gold column stands in its score row.

    With ``ties=True``: ``(ahead, tied)``, the number of items scoring strictly higher and the number of
    *other* items scoring exactly the same. Ties are then counted fairly: the metrics below give the
    expectation under a uniformly random order of the tied group (the gold item is equally likely at
    0-based positions ahead .. ahead + tied), so a coarse score grid (bf16, integer counts) neither inflates
    nor deflates recall. Without ``ties``: one pessimistic rank, ahead + tied (every tie counted before the
    gold item), for callers that rank by coarse counts and want a lower bound."""
    scores = np.asarray(scores, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.int64)
    gold_score = scores[np.arange(len(gold)), gold][:, None]
    ahead = (scores > gold_score).sum(axis=1)
    tied = (scores == gold_score).sum(axis=1) - 1
    return (ahead, tied) if ties else ahead + tied


def _expected(ranks, ties, k: int, gain) -> np.ndarray:
    """Per-sample expectation of gain(position) [position < k] with the gold item uniformly at one of the
    positions ranks .. ranks + ties (0-based); gain(p) is evaluated on 0..k-1 and prefix-summed."""
    ranks = np.asarray(ranks, dtype=np.int64)
    ties = np.zeros_like(ranks) if ties is None else np.asarray(ties, dtype=np.int64)
    cum = np.concatenate([[0.0], np.cumsum(gain(np.arange(k)))])  # cum[j] = sum of gains of positions < j
    lo, hi = np.clip(ranks, 0, k), np.clip(ranks + ties + 1, 0, k)
    return (cum[hi] - cum[lo]) / (ties + 1)


def recall_at_k(ranks: np.ndarray, k: int, ties: np.ndarray | None = None) -> float:
    """Share of samples whose gold item is in the top k (0.0 for no samples); with ``ties`` (see
    :func:`gold_ranks`), the expected share under a random order of tied items."""
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(_expected(ranks, ties, k, np.ones_like).mean())


def mrr_at_k(ranks: np.ndarray, k: int, ties: np.ndarray | None = None) -> float:
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(_expected(ranks, ties, k, lambda p: 1.0 / (p + 1)).mean())


def ndcg_at_k(ranks: np.ndarray, k: int, ties: np.ndarray | None = None) -> float:
    ranks = np.asarray(ranks)
    if not len(ranks):
        return 0.0
    return float(_expected(ranks, ties, k, lambda p: 1.0 / np.log2(p + 2)).mean())


# -- feedback-aware metrics (ECR_SPEC 6.1) ----------------------------------------------------------------------
# Feedback codes as the reference's evaluator: like 1, dislike 0, not said -1.

def _pairwise_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(s_pos > s_neg) + 0.5 P(tie) over all (pos, neg) pairs (Mann-Whitney), by sorting: O(n log n)."""
    neg = np.sort(np.asarray(neg, dtype=np.float64))
    pos = np.asarray(pos, dtype=np.float64)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def batch_auc(scores: np.ndarray, feedback: np.ndarray, batch_size: int) -> tuple[float, int, int]:
    """The paper's AUC: per consecutive batch of ``batch_size`` samples in file order, the AUC of liked
    against disliked samples (not-said ignored); batches without both are skipped; the mean over the rest.
    Returns (auc, batches used, batches skipped); auc is None when no batch has both classes."""
    scores, feedback = np.asarray(scores), np.asarray(feedback)
    values, skipped = [], 0
    for lo in range(0, len(scores), batch_size):
        s, f = scores[lo:lo + batch_size], feedback[lo:lo + batch_size]
        pos, neg = s[f == 1], s[f == 0]
        if len(pos) == 0 or len(neg) == 0:
            skipped += 1
            continue
        values.append(_pairwise_auc(pos, neg))
    return (float(np.mean(values)) if values else None), len(values), skipped


def global_auc(scores: np.ndarray, feedback: np.ndarray) -> float:
    """AUC of liked against disliked samples over the whole split (None without both classes)."""
    scores, feedback = np.asarray(scores), np.asarray(feedback)
    pos, neg = scores[feedback == 1], scores[feedback == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    return _pairwise_auc(pos, neg)


def recommendation_metrics(ranks: np.ndarray, feedback: np.ndarray, gold_prob: np.ndarray, *, ks=(1, 10, 50),
                           auc_batch_size: int = 32, ties: np.ndarray | None = None) -> dict:
    """Every number of Tables 1 and 3 plus extras, from per-sample gold ranks (0-based, among the items;
    with ``ties``, items strictly ahead and tied items as :func:`gold_ranks` returns them), feedback codes
    and the gold item's softmax probability over all entities, in file order.

    recall@k over all samples; recall_true@k (RT@k) over liked samples; mrr@k, ndcg@k over all samples;
    auc (per batch, the paper's protocol) with the batches used and skipped; auc_global; mse as logged by the
    reference ((p-1)^2 for liked, p^2 for disliked samples)."""
    ranks, feedback, gold_prob = np.asarray(ranks), np.asarray(feedback), np.asarray(gold_prob, dtype=np.float64)
    liked = feedback == 1
    ties = None if ties is None else np.asarray(ties)
    tl = None if ties is None else ties[liked]
    out: dict = {"samples": int(len(ranks)), "liked": int(liked.sum()), "disliked": int((feedback == 0).sum())}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k, ties)
        out[f"recall_true@{k}"] = recall_at_k(ranks[liked], k, tl)
        out[f"mrr@{k}"] = mrr_at_k(ranks, k, ties)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k, ties)
    auc, used, skipped = batch_auc(gold_prob, feedback, auc_batch_size)
    out.update({"auc": auc, "auc_batches": used, "auc_batches_skipped": skipped,
                "auc_global": global_auc(gold_prob, feedback)})
    judged = feedback >= 0
    err = np.where(liked, (gold_prob - 1.0) ** 2, gold_prob ** 2)
    out["mse"] = float(err[judged].mean()) if judged.any() else None
    return out
