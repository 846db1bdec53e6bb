"""Ranking metrics and the baselines on hand-computed cases."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from ecrflow.baselines import evaluate_baselines
from ecrflow.cooccurrence import CoOccurrence
from ecrflow.data.process import REC_SCHEMA
from ecrflow.evaluate import gold_ranks, mrr_at_k, ndcg_at_k, recall_at_k


def test_ranks_and_metrics_by_hand():
    scores = np.array([[0.1, 0.9, 0.5, 0.3],   # gold 2 -> rank 1
                       [0.8, 0.1, 0.2, 0.7],   # gold 0 -> rank 0
                       [0.4, 0.4, 0.4, 0.1]])  # gold 1, tied with two items -> pessimistic rank 2
    ranks = gold_ranks(scores, np.array([2, 0, 1]))
    assert ranks.tolist() == [1, 0, 2]
    assert recall_at_k(ranks, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert mrr_at_k(ranks, 2) == pytest.approx((1 / 2 + 1) / 3)
    assert ndcg_at_k(ranks, 3) == pytest.approx((1 / np.log2(3) + 1 + 1 / np.log2(4)) / 3)
    assert recall_at_k(np.array([]), 10) == 0.0


def _rec(rows):
    base = {"dialog_id": "d", "turn": 1, "context_roles": ["seeker"], "resp": "", "resp_text": "",
            "rec_redial_ids": None, "rec_suggested": None, "next_emotions": ["neutral"], "next_emotion_probs": [1.0],
            "entity_emotions": None, "entity_emotion_probs": None}
    return pa.Table.from_pylist([{**base, **r} for r in rows], schema=REC_SCHEMA)


def test_baselines_by_hand():
    # Items 10, 11, 12. Training recommends 11 twice and 10 once: popularity ranks 11, 10, 12.
    train = _rec([{"context": ["x"], "entity": [], "rec": [11, 11, 10], "rec_feedback": ["like"] * 3}])
    # Test: context entity 1 co-occurs with item 12 only; one sample without context is skipped.
    test = _rec([{"context": ["x"], "entity": [1], "rec": [12], "rec_feedback": ["like"]},
                 {"context": [], "entity": [1], "rec": [10], "rec_feedback": ["like"]}])
    counts = sp.csr_matrix(([3.0], ([1], [12])), shape=(13, 13))
    rows = {r["model"]: r for r in evaluate_baselines(train, test, [10, 11, 12], CoOccurrence(counts), ks=(1, 2))}
    assert rows["popularity"]["n_samples"] == 1
    assert rows["popularity"]["R@1"] == 0.0 and rows["popularity"]["R@2"] == 0.0
    assert rows["cooccurrence"]["R@1"] == 1.0 and rows["cooccurrence"]["RT@1"] == 1.0


def test_leave_dialog_out_removes_the_leak():
    # One training dialog: entity 1 in the context, item 12 recommended later. Its own counts are the only
    # link 1 -> 12, so the full statistics find the gold item and the leave-dialog-out ones cannot.
    train = _rec([{"dialog_id": "d", "context": ["x"], "entity": [1], "rec": [12], "rec_feedback": ["like"]},
                  {"dialog_id": "e", "context": ["x"], "entity": [2], "rec": [11, 11], "rec_feedback": ["like"] * 2}])
    counts = sp.csr_matrix(([1.0], ([1], [12])), shape=(13, 13))
    contrib = pa.table({"dialog_id": ["d"], "src": pa.array([1], pa.int32()), "dst": pa.array([12], pa.int32()),
                        "count": pa.array([1], pa.int32())})
    rows = {r["model"]: r for r in evaluate_baselines(train, train, [10, 11, 12], CoOccurrence(counts, contrib),
                                                      ks=(1,))}
    assert rows["cooccurrence@train"]["n_samples"] == 3
    # Sample d: found with the leak, ranked by popularity (12 has 1 vs 11's 2) without it; samples e: 11 wins.
    assert rows["cooccurrence@train"]["R@1"] == pytest.approx(1.0)
    assert rows["cooccurrence@train_leave_dialog_out"]["R@1"] == pytest.approx(2 / 3)
