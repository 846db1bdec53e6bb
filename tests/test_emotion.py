"""Emotion labels made by the pipeline: the word-to-type mapping, strict parsing of annotator answers, the
focal loss and Recall@2 on hand cases, the split by dialogue, labelled dialogues in the ECR format."""

import json
import math

import numpy as np
import pytest
import torch

from ecrflow.constants import EMOTIONS
from ecrflow.emotion.annotate import clean_text, parse_answer, sample, seeker_utterances, summarise
from ecrflow.emotion.classifier import focal_loss, multi_hot, recall_at_k, split_annotations
from ecrflow.emotion.mapping import label_shares, load_mapping, map_words


def test_shipped_mapping_covers_the_nine_types():
    table = load_mapping()
    assert set(table.values()) == set(EMOTIONS)
    assert len(table) >= 93  # the paper mapped 93 raw types
    assert table["love"] == "like" and table["thankful"] == "grateful" and table["nostalgic"] == "nostalgia"


def test_map_words_counts_unmapped():
    table = load_mapping()
    assert map_words(["Excited!", "joy", "bewildered"], table) == (["happy"], ["bewildered"])
    assert map_words(["love", "Like"], table) == (["like"], [])  # one type once


def test_bad_mapping_line_is_named(tmp_path):
    bad = tmp_path / "map.tsv"
    bad.write_text("love\tlike\nmeh\tbored\n")
    with pytest.raises(ValueError, match="line 2"):
        load_mapping(bad)


@pytest.mark.parametrize("answer, words", [
    ("happy", ["happy"]), ("Happy, curious", ["happy", "curious"]), ("grateful.", ["grateful"]),
    ("  like ,  curious ", ["like", "curious"]),
    ("I think the seeker is happy", None), ("happy, sad, angry", None), ("", None), (None, None),
    ("happy curious", None), ("happy; curious", None),
])
def test_annotator_answers_are_parsed_strictly(answer, words):
    assert parse_answer(answer) == words


class _Answer:
    def __init__(self, text, error=None):
        self.text, self.error = text, error


def test_unparseable_answers_are_reported_not_guessed():
    rows = [{"dialog_id": str(i), "message": 0, "text": "x", "history": ""} for i in range(5)]
    answers = [_Answer("happy, curious"), _Answer("The seeker feels happy"), _Answer("bewildered"),
               _Answer(None, error="HTTP 500"), _Answer("love")]
    out, summary = summarise(rows, answers, load_mapping())
    assert [o["labels"] for o in out] == [["happy", "curious"], [], [], [], ["like"]]
    assert summary["unparseable"] == 1 and summary["request_errors"] == 1 and summary["labelled"] == 2
    assert summary["unmapped_words"] == {"bewildered": 1} and summary["without_known_word"] == 1
    assert summary["label_shares"]["happy"] == 0.5 and summary["label_shares"]["like"] == 0.5


def test_label_shares_count_utterances():
    assert label_shares([["like", "happy"], ["like"]])["like"] == 1.0


def test_focal_loss_hand_case():
    logits = torch.zeros(1, 2)
    targets = torch.tensor([[1.0, 0.0]])
    # p = 0.5 everywhere: CE = ln 2, (1 - p_t)^2 = 0.25; alpha_t = 0.25 (positive), 0.75 (negative)
    want = (0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)) / 2
    assert focal_loss(logits, targets, gamma=2.0, alpha=0.25).item() == pytest.approx(want, rel=1e-6)
    x = torch.tensor([[2.0, -1.0, 0.3]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y)
    assert focal_loss(x, y, gamma=0.0, alpha=None).item() == pytest.approx(bce.item(), rel=1e-6)
    # confident right answers weigh less than under cross-entropy: that is the point of the loss
    assert focal_loss(x, y, gamma=2.0, alpha=None) < bce


def test_recall_at_2_hand_case():
    scores = np.array([[0.9, 0.8, 0.1], [0.9, 0.1, 0.8], [0.1, 0.2, 0.9], [0.5, 0.5, 0.5]])
    labels = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]])
    # row 1: both gold in the top 2 (1); row 2: gold type 1 ranks third (0); row 3: 1; row 4 has no gold
    assert recall_at_k(scores, labels, 2) == pytest.approx(2 / 3)
    assert recall_at_k(scores, labels, 1) == pytest.approx((0.5 + 0 + 1) / 3)


def test_multi_hot_and_split_by_dialogue():
    y = multi_hot([["like", "surprise"], []])
    assert y.shape == (2, 9) and y[0, 0] == 1 and y[0, 8] == 1 and y[1].sum() == 0
    rows = [{"dialog_id": str(i // 3), "labels": ["like"]} for i in range(60)] + [{"dialog_id": "x", "labels": []}]
    tr, va = split_annotations(rows, 0.2, seed=1)
    assert {r["dialog_id"] for r in tr}.isdisjoint({r["dialog_id"] for r in va})
    assert len({r["dialog_id"] for r in va}) == 4 and len(tr) + len(va) == 60  # unlabelled rows dropped
    assert split_annotations(rows, 0.2, seed=1) == (tr, va)


def test_seeker_utterances_with_history(unicrs_record, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(unicrs_record) + "\n")
    rows = seeker_utterances(path, max_history=2)
    seeker = unicrs_record["initiatorWorkerId"]
    n_seeker = sum(1 for m in unicrs_record["messages"] if m["senderWorkerId"] == seeker and m["text"].strip())
    assert len(rows) == n_seeker
    assert all("@" not in r["text"] for r in rows)  # movie ids read "a movie"
    assert rows[-1]["history"].count("\n") <= 1  # at most two previous messages
    assert sample(rows, 2, seed=0) == sample(rows, 2, seed=0) and len(sample(rows, 2, seed=0)) == min(2, len(rows))
    assert clean_text("Have you seen @12345 ?") == "Have you seen a movie ?"
