"""The sparse emotion-filtered co-occurrence against a brute-force count (ECR_SPEC 3.7)."""

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from ecrflow.constants import EMOTIONS
from ecrflow.cooccurrence import CoOccurrence, count_cooccurrence, save_counts
from ecrflow.data.process import SEQUENCE_SCHEMA


def _table(dialogs):
    rows = [{"dialog_id": did, "entity": [e for e, _ in seq], "entity_turn": list(range(len(seq))),
             "entity_is_movie": [True] * len(seq), "entity_name": [None] * len(seq),
             "entity_emotions": [labs for _, labs in seq], "entity_emotion_probs": [[0.5] * len(labs) for _, labs in seq]}
            for did, seq in dialogs]
    return pa.Table.from_pylist(rows, schema=SEQUENCE_SCHEMA)


def _brute(dialogs, top_n, skip=None):
    c = Counter()
    for did, seq in dialogs:
        if did == skip:
            continue
        for i in range(len(seq)):
            for j in range(i + 1, len(seq)):
                a, b = seq[i][1][:top_n], seq[j][1][:top_n]
                if a and b and set(a) & set(b):
                    c[(seq[i][0], seq[j][0])] += 1
    return c


def _random_dialogs(seed, n_dialogs=40, n_entity=12):
    rng = np.random.default_rng(seed)
    dialogs = []
    for d in range(n_dialogs):
        seq = []
        for _ in range(int(rng.integers(0, 9))):
            k = int(rng.integers(0, 5))
            labs = [EMOTIONS[i] for i in rng.choice(9, size=k, replace=False)]
            seq.append((int(rng.integers(0, n_entity)), labs))
        dialogs.append((f"d{d}", seq))
    return dialogs


def test_hand_case():
    # e0(like) e1(happy) e0(like,happy) e2(): pairs 0->0 (like), 0->... only overlapping, non-empty labels.
    dialogs = [("a", [(0, ["like"]), (1, ["happy"]), (0, ["like", "happy"]), (2, [])])]
    res = count_cooccurrence(_table(dialogs), n_entity=4, top_n=3)
    dense = res.counts.toarray()
    expected = np.zeros((4, 4))
    expected[0, 0] = 1  # e0(like) -> e0(like, happy): self pairs count
    expected[1, 0] = 1  # e1(happy) -> e0(like, happy)
    assert (dense == expected).all()
    rows = CoOccurrence(res.counts).rows([0, 1, 2])
    assert rows.toarray()[0].tolist() == [1.0, 0, 0, 0] and rows.toarray()[2].sum() == 0


@pytest.mark.parametrize("top_n", [1, 3])
def test_matches_brute_force(top_n):
    dialogs = _random_dialogs(seed=top_n)
    res = count_cooccurrence(_table(dialogs), n_entity=12, top_n=top_n)
    dense = res.counts.toarray()
    expected = np.zeros((12, 12))
    for (i, j), n in _brute(dialogs, top_n).items():
        expected[i, j] = n
    assert (dense == expected).all() and dense.sum() > 20
    # Rows normalise to P(e_j | e_i); empty rows stay zero.
    norm = CoOccurrence(res.counts).normalised().toarray()
    sums = expected.sum(axis=1, keepdims=True)
    assert np.allclose(norm, np.divide(expected, sums, out=np.zeros_like(expected), where=sums > 0), atol=1e-6)


def test_leave_dialog_out_and_file_round_trip(tmp_path):
    dialogs = _random_dialogs(seed=5)
    res = count_cooccurrence(_table(dialogs), n_entity=12, top_n=3)
    save_counts(tmp_path / "c.npz", tmp_path / "c.parquet", res)
    cooc = CoOccurrence.load(tmp_path / "c.npz", tmp_path / "c.parquet")
    ids = [0, 3, 3, 7, 11]
    for skip in ("d0", "d7", "d21"):
        expected = np.zeros((12, 12))
        for (i, j), n in _brute(dialogs, 3, skip=skip).items():
            expected[i, j] = n
        sums = expected.sum(axis=1, keepdims=True)
        norm = np.divide(expected, sums, out=np.zeros_like(expected), where=sums > 0)
        assert np.allclose(cooc.rows(ids, exclude_dialog=skip).toarray(), norm[ids], atol=1e-6)
    # Without exclusion (or for a dialog not in the table, e.g. a test dialog), the full statistics.
    assert np.allclose(cooc.rows(ids, exclude_dialog="not-a-train-dialog").toarray(), cooc.rows(ids).toarray())
    assert (cooc.rows(ids).toarray() != cooc.rows(ids, exclude_dialog="d0").toarray()).any()
