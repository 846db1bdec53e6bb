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
                           auc_batch_size: int = 32) -> dict:
    """Every number of Tables 1 and 3 plus extras, from per-sample gold ranks (0-based, among the items),
    feedback codes and the gold item's softmax probability over all entities, in file order.

    recall@k over all samples; recall_true@k (RT@k) over liked samples; mrr@k, ndcg@k over all samples;
    auc (per batch, the paper's protocol) with the batches used and skipped; auc_global; mse as logged by the
    reference ((p-1)^2 for liked, p^2 for disliked samples)."""
    ranks, feedback, gold_prob = np.asarray(ranks), np.asarray(feedback), np.asarray(gold_prob, dtype=np.float64)
    liked = feedback == 1
    out: dict = {"samples": int(len(ranks)), "liked": int(liked.sum()), "disliked": int((feedback == 0).sum())}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(ranks, k)
        out[f"recall_true@{k}"] = recall_at_k(ranks[liked], k)
        out[f"mrr@{k}"] = mrr_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    auc, used, skipped = batch_auc(gold_prob, feedback, auc_batch_size)
    out.update({"auc": auc, "auc_batches": used, "auc_batches_skipped": skipped,
                "auc_global": global_auc(gold_prob, feedback)})
    judged = feedback >= 0
    err = np.where(liked, (gold_prob - 1.0) ** 2, gold_prob ** 2)
    out["mse"] = float(err[judged].mean()) if judged.any() else None
    return out
