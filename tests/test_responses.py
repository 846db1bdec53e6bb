"""UniCRS responses from the release's positional file, aligned to keyed rows (ECR_SPEC 3.3)."""

import json

import pyarrow as pa
import pytest

from ecrflow.data.process import REC_SCHEMA, dialog_records
from ecrflow.data.redial import ReadStats, parse_dialog
from ecrflow.data.responses import read_unicrs_responses
from ecrflow.data.turns import EmotionRule
from ecrflow.errors import InputError

from conftest import entity2id_for


@pytest.fixture
def rec(ecr_record):
    d = parse_dialog(ecr_record, "x", 1, require_emotion=True, stats=ReadStats())
    _, rows, _ = dialog_records(d, entity2id_for(ecr_record), EmotionRule(), ReadStats())
    return pa.Table.from_pylist(rows, schema=REC_SCHEMA)


def _write(path, preds, labels=None):
    labels = labels or [""] * len(preds)
    path.write_text("".join(json.dumps({"pred": p, "label": l}) + "\n" for p, l in zip(preds, labels)))
    return path


def test_alignment_by_key(tmp_path, rec):
    # Recommender turns 0, 2, 4, 6; turn 0 has no context and consumes no line.
    path = _write(tmp_path / "conv_unicrs_test.jsonl",
                  ["User: hi System: Have you seen <movie>?", "System: I like those too", "System: <movie> is great"],
                  ["System: <movie>", "System: those are good movies as well", "something else"])
    table, counts = read_unicrs_responses(path, rec)
    rows = table.to_pylist()
    assert [(r["dialog_id"], r["turn"]) for r in rows] == [("20051", 2), ("20051", 4), ("20051", 6)]
    assert rows[0]["resp_all"] == "Have you seen <movie>?" and rows[0]["resp"] == "Have you seen <movie>?"
    assert rows[1]["resp_all"] == "I like those too" and rows[1]["resp"] == ""
    assert counts == {"responses": 3, "with_movie_slot": 2, "label_mismatches": 1}


def test_wrong_line_count_fails(tmp_path, rec):
    path = _write(tmp_path / "conv_unicrs_test.jsonl", ["System: a", "System: b"])
    with pytest.raises(InputError, match="2 responses for 3 recommender turns with a context"):
        read_unicrs_responses(path, rec)
