"""Samples of the prompt-encoder stages built from processed rows, and their collation."""

import pyarrow as pa
import pytest
import scipy.sparse as sp
import torch

from ecrflow.cooccurrence import CoOccurrence
from ecrflow.data.process import PRETRAIN_SCHEMA, REC_SCHEMA
from ecrflow.recommend.data import (Collator, TextSide, conversation_samples, pretrain_samples,
                                    rec_samples)

ROW = {
    "dialog_id": "d1", "turn": 2, "context": ["hi, a comedy please", "try Heat (1995)"],
    "context_roles": ["seeker", "recommender"], "resp": "or <movie> , also <movie>",
    "resp_text": "or Up (2009), also Big (1988)", "rec": [5, 6], "rec_feedback": ["like", "dislike"],
    "rec_redial_ids": ["1", "2"], "rec_suggested": [1, 1], "next_emotions": ["happy"], "next_emotion_probs": [0.9],
    "entity": [3, 4, 3], "entity_emotions": [["like"], [], ["like", "happy"]],
    "entity_emotion_probs": [[0.8], [], [0.5, 0.4]],
}


@pytest.fixture
def sides(tiny_models):
    f = tiny_models["frozen"]
    return TextSide(f.lm_tokenizer, 64), TextSide(f.encoder_tokenizer, 64)


def _rec_table(*rows):
    return pa.Table.from_pylist(list(rows), schema=REC_SCHEMA)


def test_one_rec_sample_per_item_with_feedback_weights(sides):
    lm, enc = sides
    w = {"like": 2.0, "dislike": 1.0, "not_said": 0.5}
    no_context = {**ROW, "turn": 0, "context": [], "context_roles": []}
    samples = rec_samples(_rec_table(ROW, no_context), lm, enc, 2, feedback_weights=w)
    assert [(s.target, s.feedback, s.weight) for s in samples] == [(5, "like", 2.0), (6, "dislike", 1.0)]
    assert samples[0].entity == [4, 3]  # the last entity_max_length entities
    assert samples[0].emotions == [[], ["like", "happy"]]
    text = lm.tokenizer.decode(samples[0].lm_ids)
    assert text == "User: hi, a comedy please<|endoftext|>System: try Heat (1995)<|endoftext|>"
    assert all(s.weight == 1.0 for s in rec_samples(_rec_table(ROW), lm, enc, 2, feedback_weights=None))


def test_use_resp_appends_the_response_as_the_systems_turn(sides):
    lm, enc = sides
    samples = rec_samples(_rec_table(ROW), lm, enc, 32, feedback_weights=None,
                          responses={("d1", 2): "you may like <movie>"})
    assert lm.tokenizer.decode(samples[0].lm_ids).endswith("System: you may like <movie><|endoftext|>")
    with pytest.raises(KeyError, match="dialog d1 turn 2"):
        rec_samples(_rec_table(ROW), lm, enc, 32, feedback_weights=None, responses={})


def test_pretrain_samples_include_the_current_turn(sides):
    lm, enc = sides
    row = {k: ROW[k] for k in ("dialog_id", "turn", "context", "context_roles", "entity", "entity_emotions",
                               "entity_emotion_probs")}
    row.update(role="recommender", resp="or Up (2009)", rec=[5, 9])
    samples = pretrain_samples(pa.Table.from_pylist([row], schema=PRETRAIN_SCHEMA), lm, enc, 32)
    assert [s.target for s in samples] == [5, 9]
    assert lm.tokenizer.decode(samples[0].lm_ids).endswith("System: or Up (2009)<|endoftext|>")


def test_conversation_labels_cover_the_response_only(sides):
    lm, enc = sides
    (s,) = conversation_samples(_rec_table(ROW), lm, enc, 32, resp_max_length=40, for_generation=False)
    n_ctx = sum(1 for x in s.labels if x == -100)
    assert lm.tokenizer.decode(s.lm_ids[:n_ctx]).endswith("System:")
    assert lm.tokenizer.decode(s.labels[n_ctx:]) == " or <movie> , also <movie><|endoftext|>"
    (g,) = conversation_samples(_rec_table(ROW), lm, enc, 32, resp_max_length=40, for_generation=True)
    assert g.labels is None and g.lm_ids == s.lm_ids[:n_ctx]


def test_collator_pads_and_builds_sparse_global_rows(sides):
    lm, enc = sides
    counts = sp.csr_matrix(([2, 2, 1], ([3, 3, 4], [5, 6, 5])), shape=(12, 12))
    samples = rec_samples(_rec_table(ROW, {**ROW, "dialog_id": "d2", "entity": [4]}), lm, enc, 32,
                          feedback_weights=None)
    batch = Collator(lm_pad=0, enc_pad=1, pad_entity=11, cooccurrence=CoOccurrence(counts))(samples[1:3])
    assert batch["entity_ids"].tolist() == [[3, 4, 3], [4, 11, 11]]
    assert batch["entity_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    dense = batch["global_rows"].to_dense()
    assert dense.shape == (6, 12)
    assert torch.allclose(dense[0, [5, 6]], torch.tensor([0.5, 0.5])) and dense[3, 5] == 1.0
    assert batch["has_global"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["emotion_ids"].shape == (2, 3, 3) and batch["index"] == [("d1", 2), ("d2", 2)]
