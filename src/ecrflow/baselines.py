"""Non-neural reference recommenders, evaluated like the models (one sample per (turn, gold item)).

- ``popularity``: items ranked by how often they are recommended in training turns;
- ``cooccurrence``: items scored by the global-entity rows of the context entities, sum_e P(item | e), with
  popularity breaking ties. It uses only the training co-occurrence statistics, so it shows how much signal
  the global entities carry before any model is trained;
- ``kg_walk``: items scored by the context entities' KG rows, sum_e K_e(item) (:mod:`ecrflow.kg.neighbourhood`:
  where a one- or two-step walk on the KG ends), with popularity breaking ties: the signal in the KG alone.

A trained recommender should beat both; on the toy data, ``cooccurrence`` beating ``popularity`` is the
check that the generator's signal (genre and KG neighbours predict the recommended movie) is real.

The table also scores the co-occurrence baseline on the *training* samples twice: with the full statistics
(what the paper's training samples see, their own dialog's future turns included) and leaving the sample's
own dialog out. The gap between the two measures the leakage that ``cooccurrence.leave_dialog_out`` removes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .cooccurrence import CoOccurrence
from .evaluate import gold_ranks, mrr_at_k, ndcg_at_k, recall_at_k
from .kg.neighbourhood import KGNeighbourhood


def rec_samples(rec: pa.Table, item_ids: list[int]) -> list[tuple[str, list[int], int, str]]:
    """(dialog id, context entity ids, gold item column, feedback) per (recommender turn with a context,
    item in its rec list), as the reference's stage-2 samples."""
    col = {item: k for k, item in enumerate(item_ids)}
    out = []
    for row in rec.select(["dialog_id", "context", "entity", "rec", "rec_feedback"]).to_pylist():
        if not row["context"]:
            continue
        for item, fb in zip(row["rec"], row["rec_feedback"]):
            if item in col:
                out.append((row["dialog_id"], row["entity"], col[item], fb))
    return out


def popularity_scores(train_rec: pa.Table, item_ids: list[int]) -> np.ndarray:
    col = {item: k for k, item in enumerate(item_ids)}
    counts = np.zeros(len(item_ids))
    for items in train_rec.column("rec").to_pylist():
        for item in items:
            if item in col:
                counts[col[item]] += 1
    return counts


def _metrics(name: str, score_chunks, samples, ks) -> dict:
    """Metrics from score rows that arrive in chunks (a full samples x items matrix of ReDial's training
    samples would take several GB)."""
    gold = np.array([g for _, _, g, _ in samples], dtype=np.int64)
    liked = np.array([fb == "like" for _, _, _, fb in samples], dtype=bool)
    parts, start = [], 0
    for chunk in score_chunks:
        parts.append(gold_ranks(chunk, gold[start:start + len(chunk)]))
        start += len(chunk)
    ranks = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    row = {"model": name, "n_samples": len(samples)}
    for k in ks:
        row[f"R@{k}"] = recall_at_k(ranks, k)
    for k in ks:
        row[f"RT@{k}"] = recall_at_k(ranks[liked], k)
    for k in ks:
        row[f"MRR@{k}"] = mrr_at_k(ranks, k)
        row[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
    return row


def _chunks(n: int, size: int = 1024):
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def popularity_chunks(samples, pop: np.ndarray):
    for lo, hi in _chunks(len(samples)):
        yield np.broadcast_to(pop, (hi - lo, len(pop)))


def row_sum_chunks(samples, item_ids: list[int], rows, tie: np.ndarray):
    """Per sample, the sum over its context entities of their rows (``rows(dialog id, entity ids)``, sparse
    len(ids) x n_entity) at the items, plus a popularity tie-breaker; ``tie`` alone without context."""
    items = np.asarray(item_ids, dtype=np.int64)
    for lo, hi in _chunks(len(samples)):
        yield np.stack([np.asarray(rows(did, ents).sum(axis=0)).ravel()[items] + tie if ents else tie
                        for did, ents, _, _ in samples[lo:hi]])


def cooccurrence_chunks(samples, item_ids: list[int], cooc: CoOccurrence, tie: np.ndarray,
                        leave_dialog_out: bool = False):
    """Per sample, sum_e P(item | e) over its context entities, plus a popularity tie-breaker."""
    return row_sum_chunks(samples, item_ids,
                          lambda did, ents: cooc.rows(ents, exclude_dialog=did if leave_dialog_out else None), tie)


def kg_walk_chunks(samples, item_ids: list[int], kg: KGNeighbourhood, tie: np.ndarray):
    """Per sample, sum_e K_e(item) over its context entities, plus a popularity tie-breaker."""
    return row_sum_chunks(samples, item_ids, lambda did, ents: kg.rows(ents), tie)


def evaluate_baselines(train_rec: pa.Table, test_rec: pa.Table, item_ids: list[int], cooc: CoOccurrence,
                       ks=(1, 10, 50), kg: KGNeighbourhood | None = None) -> list[dict]:
    test = rec_samples(test_rec, item_ids)
    train = rec_samples(train_rec, item_ids)
    pop = popularity_scores(train_rec, item_ids)
    # Popularity enters the co-occurrence scores only as a tie-breaker (scaled below any co-occurrence mass).
    tie = pop / (pop.max() + 1.0) * 1e-6
    rows = [
        _metrics("popularity", popularity_chunks(test, pop), test, ks),
        _metrics("cooccurrence", cooccurrence_chunks(test, item_ids, cooc, tie), test, ks),
    ]
    if kg is not None:
        rows.append(_metrics("kg_walk", kg_walk_chunks(test, item_ids, kg, tie), test, ks))
    return rows + [
        _metrics("cooccurrence@train", cooccurrence_chunks(train, item_ids, cooc, tie), train, ks),
        _metrics("cooccurrence@train_leave_dialog_out",
                 cooccurrence_chunks(train, item_ids, cooc, tie, leave_dialog_out=True), train, ks),
    ]
