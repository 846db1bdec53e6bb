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


def test_the_text_encoder_input_starts_with_cls_after_left_truncation(tiny_models):
    from types import SimpleNamespace

    from ecrflow.recommend.training import text_sides

    f = tiny_models["frozen"]
    lm, enc = text_sides(SimpleNamespace(frozen=f), SimpleNamespace(max_length=6))
    assert enc.lead_token == f.encoder_tokenizer.cls_token_id and lm.lead_token is None
    text = "User: hi, a comedy please</s>System: try Heat (1995)</s>"
    plain = f.encoder_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(plain) > 6
    # As dataset_rec.py: the last max_length - 1 tokens, with cls_token_id inserted at position 0.
    (ids,) = enc.encode_left([text])
    assert ids == [f.encoder_tokenizer.cls_token_id] + plain[-5:] and len(ids) == 6
    assert lm.encode_left([text])[0] == f.lm_tokenizer(text, add_special_tokens=False)["input_ids"][-6:]
    # A tokenizer without a CLS token (a decoder's) leads with its bos token.
    no_cls = SimpleNamespace(frozen=SimpleNamespace(lm_tokenizer=f.lm_tokenizer, encoder_tokenizer=f.lm_tokenizer))
    assert text_sides(no_cls, SimpleNamespace(max_length=6))[1].lead_token == f.lm_tokenizer.bos_token_id


def test_samples_of_every_stage_start_the_encoder_input_with_cls(tiny_models):
    f = tiny_models["frozen"]
    cls = f.encoder_tokenizer.cls_token_id
    lm, enc = TextSide(f.lm_tokenizer, 64), TextSide(f.encoder_tokenizer, 64, lead_token=cls)
    rec = rec_samples(_rec_table(ROW), lm, enc, 32, feedback_weights=None)
    (conv,) = conversation_samples(_rec_table(ROW), lm, enc, 32, resp_max_length=40, for_generation=True)
    assert all(s.enc_ids[0] == cls and cls not in s.enc_ids[1:] for s in [*rec, conv])
    # The language model's input has no lead token: it starts with the context's first tag.
    assert f.lm_tokenizer.decode(rec[0].lm_ids).startswith("User:")


def test_use_resp_blanks_a_response_without_movie_and_keeps_the_system_tag(sides):
    lm, enc = sides
    (s, _) = rec_samples(_rec_table(ROW), lm, enc, 64, feedback_weights=None,
                         responses={("d1", 2): "I do not know"})
    text = lm.tokenizer.decode(s.lm_ids)
    # merge.py: resp = u_r if it contains <movie> else ''; dataset_rec.py still appends "System: " + resp.
    assert "know" not in text and text.replace(" ", "").endswith("(1995)<|endoftext|>System:<|endoftext|>")
    assert enc.tokenizer.decode(s.enc_ids).replace(" ", "").endswith("System:</s>")


def test_concat_emotions_keep_the_last_labels_as_the_reference(sides):
    lm, enc = sides
    samples = rec_samples(_rec_table(ROW), lm, enc, 32, feedback_weights=None)
    from ecrflow.constants import EMOTION_INDEX

    first = Collator(lm_pad=0, enc_pad=1, pad_entity=11, emotion_top_n=1)(samples[:1])
    last = Collator(lm_pad=0, enc_pad=1, pad_entity=11, emotion_top_n=1, emotion_keep="last")(samples[:1])
    # Entity 3 (third slot) has ["like", "happy"]: the first label, or the last as the reference's [-3:].
    assert first["emotion_ids"][0, 2, 0] == EMOTION_INDEX["like"]
    assert last["emotion_ids"][0, 2, 0] == EMOTION_INDEX["happy"]
    assert last["emotion_probs"][0, 2, 0].item() == pytest.approx(0.4)
