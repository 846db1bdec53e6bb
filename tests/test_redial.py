"""Parsing of the real record formats and the errors for bad input."""

import json

import pytest

from ecrflow.data.redial import ReadStats, parse_dialog, read_dialogs
from ecrflow.errors import InputError

from conftest import FIXTURES


def test_ecr_record_parses_with_emotions(ecr_record):
    d = parse_dialog(ecr_record, "x.jsonl", 1, require_emotion=True, stats=ReadStats())
    assert d.dialog_id == "20051" and d.initiator == 960 and d.respondent == 961
    assert len(d.messages) == 16
    # Recommender messages have no emotion field; seeker messages a sorted dict or [].
    assert d.messages[0].emotion is None
    first = d.messages[3].emotion
    assert [lab for lab, _ in first[:3]] == ["like", "curious", "happy"]
    assert first[0][1] == pytest.approx(0.7446123957633972)
    assert all(a[1] >= b[1] for a, b in zip(first, first[1:]))
    assert d.messages[4].emotion == ()
    assert d.messages[1].movies == ("<http://dbpedia.org/resource/Avengers:_Infinity_War>",)
    assert d.messages[1].movie_names == ("Avengers: Infinity War (2018)",)
    assert d.initiator_questions["154513"]["liked"] == 1


def test_unicrs_record_parses_without_emotions(unicrs_record):
    stats = ReadStats()
    d = parse_dialog(unicrs_record, "x.jsonl", 1, require_emotion=False, stats=stats)
    assert d.initiator == 956 and len(d.messages) == 15
    assert all(m.emotion is None for m in d.messages)
    assert d.movie_mentions["192131"] == "American Pie "


def test_unicrs_record_rejected_when_emotions_are_required(tmp_path, unicrs_record):
    path = tmp_path / "train_data_dbpedia_raw.jsonl"
    path.write_text(json.dumps(unicrs_record) + "\n")
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=True))
    msg = str(err.value)
    assert "train_data_dbpedia_raw.jsonl, line 1" in msg and "seeker message without 'emotion'" in msg
    assert "data.emotions: none" in msg


def _write(tmp_path, lines):
    path = tmp_path / "train_data_dbpedia_emo.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_json_line_names_file_and_line(tmp_path, ecr_record):
    path = _write(tmp_path, [json.dumps(ecr_record), '{"messages": [', json.dumps(ecr_record)])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=True))
    assert err.value.line == 2 and "malformed JSON" in str(err.value) and path.name in str(err.value)


def test_empty_dialog_is_a_counted_warning(tmp_path, ecr_record):
    empty = dict(ecr_record, messages=[], conversationId="1")
    path = _write(tmp_path, [json.dumps(empty), json.dumps(ecr_record)])
    stats = ReadStats()
    dialogs = list(read_dialogs(path, require_emotion=True, stats=stats))
    assert [d.dialog_id for d in dialogs] == ["20051"]
    assert stats.counts["empty_dialogs_skipped"] == 1 and stats.examples["empty_dialogs_skipped"] == [f"{path.name}:1"]


@pytest.mark.parametrize("mutate, expected", [
    (lambda r: r["messages"][3].__setitem__("emotion", {"joy": 0.9}), "unknown emotion label 'joy'"),
    (lambda r: r["messages"][3].__setitem__("emotion", {"like": 1.5}), "must be a number in [0, 1]"),
    (lambda r: r["messages"][1].__setitem__("movie", ["Avengers"]), "expected a URI in angle brackets"),
    (lambda r: r["messages"][0].pop("text"), "message 0: 'text' must be a string"),
    (lambda r: r.pop("initiatorWorkerId"), "missing key 'initiatorWorkerId'"),
    (lambda r: r["initiatorQuestions"]["154513"].__setitem__("liked", 5), "liked must be 0 (disliked)"),
])
def test_bad_fields_name_the_problem(tmp_path, ecr_record, mutate, expected):
    mutate(ecr_record)
    path = _write(tmp_path, [json.dumps(ecr_record)])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=True))
    assert expected in str(err.value) and f"{path.name}, line 1" in str(err.value)


def test_missing_file_points_to_the_release(tmp_path):
    with pytest.raises(InputError) as err:
        list(read_dialogs(tmp_path / "test_data_dbpedia_emo.jsonl", require_emotion=True))
    assert "file not found" in str(err.value) and "ECR data release" in str(err.value)


def test_fixtures_are_the_real_samples():
    # One line each, byte-identical to the public data (see fixtures/README.md).
    for name in ("ecr_emo_dialog.jsonl", "unicrs_dbpedia_raw_dialog.jsonl"):
        assert len((FIXTURES / name).read_text().splitlines()) == 1
