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


def test_tied_scores_are_ranked_fairly():
    # Row 1: gold 2 is alone at rank 1. Row 2: gold 1 ties with items 0 and 2 at the top (3 equal scores):
    # under a random order it is at position 0, 1 or 2 with probability 1/3 each. Row 3: gold 3 is behind
    # one item and tied with one other: position 1 or 2.
    scores = np.array([[0.1, 0.9, 0.5, 0.3],
                       [0.4, 0.4, 0.4, 0.1],
                       [0.2, 0.9, 0.5, 0.5]])
    ahead, tied = gold_ranks(scores, np.array([2, 1, 3]), ties=True)
    assert ahead.tolist() == [1, 0, 1] and tied.tolist() == [0, 2, 1]
    assert gold_ranks(scores, np.array([2, 1, 3])).tolist() == [1, 2, 2]  # pessimistic: ahead + tied
    assert recall_at_k(ahead, 1, tied) == pytest.approx((0 + 1 / 3 + 0) / 3)
    assert recall_at_k(ahead, 2, tied) == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)
    assert recall_at_k(ahead, 3, tied) == pytest.approx(1.0)
    assert mrr_at_k(ahead, 2, tied) == pytest.approx((1 / 2 + (1 + 1 / 2) / 3 + (1 / 2) / 2) / 3)
    ndcg = (1 / np.log2(3) + (1 + 1 / np.log2(3) + 1 / np.log2(4)) / 3 + (1 / np.log2(3) + 1 / np.log2(4)) / 2) / 3
    assert ndcg_at_k(ahead, 3, tied) == pytest.approx(ndcg)
    # Without ties the fair metrics are the plain ones.
    assert recall_at_k(np.array([0, 3]), 2, np.array([0, 0])) == recall_at_k(np.array([0, 3]), 2) == 0.5
    # The expectation equals the average over every order of the tied items (brute force on row 2).
    import itertools
    hits = [list(order).index(1) < 2 for order in itertools.permutations([0, 1, 2])]
    assert recall_at_k(ahead[1:2], 2, tied[1:2]) == pytest.approx(np.mean(hits))


def test_recommendation_metrics_count_ties():
    from ecrflow.evaluate import recommendation_metrics

    fb = np.array([1, 0, -1])
    m = recommendation_metrics(np.array([0, 0, 5]), fb, np.array([0.5, 0.2, 0.1]), ks=(1,),
                               ties=np.array([1, 0, 0]))
    assert m["recall@1"] == pytest.approx((0.5 + 1 + 0) / 3) and m["recall_true@1"] == pytest.approx(0.5)


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


def test_kg_walk_baseline_ranks_the_items_the_context_reaches_on_the_kg():
    from ecrflow.kg.neighbourhood import KGNeighbourhood

    # Items 10, 11, 12; popularity ranks 11 first. Entity 1 (a director) links to movie 12 only, and 12 shares
    # genre 13 with 10: a walk from 1 ends at 12 after one step and at nothing else among the items, so the
    # KG walk puts 12 first where co-occurrence (no counts) falls back to popularity.
    train = _rec([{"context": ["x"], "entity": [], "rec": [11, 11, 10], "rec_feedback": ["like"] * 3}])
    test = _rec([{"context": ["x"], "entity": [1], "rec": [12], "rec_feedback": ["like"]}])
    ei = np.array([[1, 12, 12, 13, 10, 13], [12, 1, 13, 12, 13, 10]])
    kg = KGNeighbourhood(ei, 14, item_ids=[10, 11, 12])
    rows = evaluate_baselines(train, test, [10, 11, 12], CoOccurrence(sp.csr_matrix((14, 14))), ks=(1,), kg=kg)
    by = {r["model"]: r for r in rows}
    assert [r["model"] for r in rows][:3] == ["popularity", "cooccurrence", "kg_walk"]
    assert by["kg_walk"]["R@1"] == 1.0 and by["cooccurrence"]["R@1"] == 0.0
    assert "kg_walk" not in {r["model"] for r in evaluate_baselines(train, test, [10, 11, 12],
                                                                     CoOccurrence(sp.csr_matrix((14, 14))))}


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


# -- feedback-aware metrics, hand-computed ---------------------------------------------------------------------
from ecrflow.evaluate import batch_auc, global_auc, recommendation_metrics  # noqa: E402


def test_batch_auc_per_batch_in_file_order_with_skipped_batches():
    # batch 1 (size 3): liked 0.9, 0.2; disliked 0.5 -> pairs (0.9>0.5)=1, (0.2<0.5)=0 -> 0.5
    # batch 2: liked 0.4; disliked 0.4 (tie), 0.1 -> (0.5 + 1) / 2 = 0.75
    # batch 3: only not-said and liked -> skipped
    scores = [0.9, 0.5, 0.2, 0.4, 0.4, 0.1, 0.3, 0.8]
    fb = [1, 0, 1, 1, 0, 0, -1, 1]
    auc, used, skipped = batch_auc(scores, fb, 3)
    assert (used, skipped) == (2, 1) and auc == pytest.approx((0.5 + 0.75) / 2)
    # Over the whole split: liked {0.9, 0.2, 0.4, 0.8} vs disliked {0.5, 0.4, 0.1}:
    # 0.9: 3; 0.2: 1; 0.4: 1 + 0.5 tie; 0.8: 3 -> 8.5 / 12
    assert global_auc(scores, fb) == pytest.approx(8.5 / 12)
    # Batch size changes the paper's AUC, not the global one (why the table reports both).
    assert batch_auc(scores, fb, 8)[0] == pytest.approx(8.5 / 12)


def test_auc_without_both_classes_is_none_not_zero():
    assert batch_auc([0.1, 0.2], [1, 1], 32) == (None, 0, 1)
    assert global_auc([0.1, 0.2], [1, -1]) is None


def test_recall_true_counts_liked_samples_only():
    ranks = np.array([0, 5, 20, 60])
    fb = np.array([1, 0, 1, -1])
    m = recommendation_metrics(ranks, fb, np.array([0.9, 0.1, 0.6, 0.3]), ks=(1, 10, 50), auc_batch_size=32)
    assert m["recall@1"] == 0.25 and m["recall@10"] == 0.5 and m["recall@50"] == 0.75
    assert m["recall_true@1"] == 0.5 and m["recall_true@10"] == 0.5 and m["recall_true@50"] == 1.0
    assert m["mrr@10"] == pytest.approx((1 + 1 / 6) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(7)) / 4)
    assert m["auc"] == 1.0 and m["auc_global"] == 1.0  # liked 0.9, 0.6 > disliked 0.1
    # mse over judged samples: (0.9-1)^2, 0.1^2, (0.6-1)^2
    assert m["mse"] == pytest.approx((0.01 + 0.01 + 0.16) / 3)
    assert (m["samples"], m["liked"], m["disliked"]) == (4, 2, 1)
