"""Non-neural reference recommenders, evaluated like the models (one sample per (turn, gold item)).

- ``popularity``: items ranked by how often they are recommended in training turns;
- ``cooccurrence``: items scored by the global-entity rows of the context entities, sum_e P(item | e), with
  popularity breaking ties. It uses only the training co-occurrence statistics, so it shows how much signal
  the global entities carry before any model is trained.

A trained recommender should beat both; on the toy data, ``cooccurrence`` beating ``popularity`` is the
check that the generator's signal (genre and KG neighbours predict the recommended movie) is real.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .cooccurrence import CoOccurrence
from .evaluate import gold_ranks, mrr_at_k, ndcg_at_k, recall_at_k


def rec_samples(rec: pa.Table, item_ids: list[int]) -> list[tuple[list[int], int, str]]:
    """(context entity ids, gold item column, feedback) per (recommender turn with context, item in rec)."""
    col = {item: k for k, item in enumerate(item_ids)}
    out = []
    for row in rec.select(["context", "entity", "rec", "rec_feedback"]).to_pylist():
        if not row["context"]:
            continue
        for item, fb in zip(row["rec"], row["rec_feedback"]):
            if item in col:
                out.append((row["entity"], col[item], fb))
    return out


def popularity_scores(train_rec: pa.Table, item_ids: list[int]) -> np.ndarray:
    col = {item: k for k, item in enumerate(item_ids)}
    counts = np.zeros(len(item_ids))
    for items in train_rec.column("rec").to_pylist():
        for item in items:
            if item in col:
                counts[col[item]] += 1
    return counts


def evaluate_baselines(train_rec: pa.Table, test_rec: pa.Table, item_ids: list[int], cooc: CoOccurrence,
                       ks=(1, 10, 50)) -> list[dict]:
    samples = rec_samples(test_rec, item_ids)
    gold = np.array([g for _, g, _ in samples], dtype=np.int64)
    liked = np.array([fb == "like" for _, _, fb in samples], dtype=bool)
    pop = popularity_scores(train_rec, item_ids)
    # Popularity enters the co-occurrence scores only as a tie-breaker (scaled below any co-occurrence mass).
    tie = pop / (pop.max() + 1.0) * 1e-6
    norm = cooc.normalised()[:, item_ids].tocsr()
    scores = {
        "popularity": np.tile(pop, (len(samples), 1)),
        "cooccurrence": np.stack([np.asarray(norm[ents].sum(axis=0)).ravel() + tie if ents else tie
                                  for ents, _, _ in samples]) if samples else np.zeros((0, len(item_ids))),
    }
    rows = []
    for name, s in scores.items():
        ranks = gold_ranks(s, gold) if len(samples) else np.zeros(0, dtype=np.int64)
        row = {"model": name, "n_samples": len(samples)}
        for k in ks:
            row[f"R@{k}"] = recall_at_k(ranks, k)
        for k in ks:
            row[f"RT@{k}"] = recall_at_k(ranks[liked], k)
        for k in ks:
            row[f"MRR@{k}"] = mrr_at_k(ranks, k)
            row[f"NDCG@{k}"] = ndcg_at_k(ranks, k)
        rows.append(row)
    return rows
