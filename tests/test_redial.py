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


# Quirks of real ReDial files (issue 13), each on a hand-made record: accepted and counted as the reference
# reads them, or rejected naming file, line and field.

def test_null_movie_name_is_an_empty_name_and_counted(unicrs_record):
    unicrs_record["movieMentions"]["124771"] = None
    stats = ReadStats()
    d = parse_dialog(unicrs_record, "x.jsonl", 4, require_emotion=False, stats=stats)
    assert d.movie_mentions["124771"] == ""
    assert stats.counts["movie_mentions_null_name"] == 1
    assert stats.examples["movie_mentions_null_name"] == ["x.jsonl:4 movieMentions['124771']"]


def test_a_name_of_another_type_is_rejected_with_its_field(tmp_path, unicrs_record):
    unicrs_record["movieMentions"]["124771"] = 7
    path = _write(tmp_path, [json.dumps(unicrs_record)])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=False))
    assert err.value.line == 1 and err.value.field == "movieMentions['124771']"
    assert "movieMentions['124771'] must be a movie name string or null, got int" in str(err.value)


def test_questions_written_as_empty_lists_are_accepted_and_counted(unicrs_record):
    unicrs_record["initiatorQuestions"] = []
    unicrs_record["respondentQuestions"] = []
    stats = ReadStats()
    d = parse_dialog(unicrs_record, "x.jsonl", 1, require_emotion=False, stats=stats)
    assert d.initiator_questions == {}
    assert stats.counts["initiator_questions_empty_list"] == 1
    assert stats.counts["respondent_questions_empty_list"] == 1


def test_questions_of_another_type_are_rejected(tmp_path, unicrs_record):
    unicrs_record["initiatorQuestions"] = "liked"
    path = _write(tmp_path, [json.dumps(unicrs_record)])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=False))
    assert err.value.field == "initiatorQuestions" and "must be a dict (or an empty list), got str" in str(err.value)


def test_message_from_an_unknown_sender_is_dropped_and_counted(unicrs_record):
    intruder = dict(unicrs_record["messages"][1], senderWorkerId=999)
    unicrs_record["messages"].insert(2, intruder)
    stats = ReadStats()
    d = parse_dialog(unicrs_record, "x.jsonl", 3, require_emotion=False, stats=stats)
    assert len(d.messages) == 15 and all(m.sender in (956, 957) for m in d.messages)
    assert stats.counts["messages_from_unknown_sender_dropped"] == 1
    assert stats.examples["messages_from_unknown_sender_dropped"] == [
        "x.jsonl:3 message 2 (sender 999, participants 956, 957)"]


def test_a_dialog_of_unknown_senders_only_is_skipped(unicrs_record):
    for m in unicrs_record["messages"]:
        m["senderWorkerId"] = 1
    stats = ReadStats()
    assert parse_dialog(unicrs_record, "x.jsonl", 1, require_emotion=False, stats=stats) is None
    assert stats.counts["messages_from_unknown_sender_dropped"] == 15 and stats.counts["empty_dialogs_skipped"] == 1


def test_empty_seeker_text_is_counted(unicrs_record):
    unicrs_record["messages"][2]["text"] = ""
    stats = ReadStats()
    d = parse_dialog(unicrs_record, "x.jsonl", 1, require_emotion=False, stats=stats)
    assert d.messages[2].text == "" and stats.counts["seeker_messages_empty_text"] == 1


def test_missing_emotion_in_a_pipeline_labelled_file_names_that_setting(tmp_path, unicrs_record):
    path = _write(tmp_path, [json.dumps(unicrs_record)])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=True, emotion_source="pipeline"))
    msg = str(err.value)
    assert "data.emotions: pipeline" in msg and "data.emotions: dataset" not in msg
    assert "emotion_label" in err.value.hint and err.value.field == "messages[0].emotion"


def test_non_utf8_byte_names_file_line_and_offset(tmp_path, unicrs_record):
    first = (json.dumps(unicrs_record) + "\n").encode()
    bad = json.dumps(unicrs_record).encode().replace(b"Super Troopers", b"Super Tr\xf6opers", 1)
    path = tmp_path / "train_data_dbpedia_raw.jsonl"
    path.write_bytes(first + bad + b"\n")
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=False))
    in_line = bad.index(b"\xf6")
    assert err.value.line == 2
    assert (f"{path}, line 2: byte 0xf6 at byte offset {len(first) + in_line} of the file (byte {in_line} of the "
            f"line) is not valid UTF-8; expected UTF-8 text") in str(err.value)
    assert "re-encode" in err.value.hint


def test_non_utf8_byte_in_a_json_file(tmp_path):
    from ecrflow.io import read_json

    path = tmp_path / "entity2id.json"
    path.write_bytes(b'{"<a>": 0,\n "<b\xe9>": 1}\n')
    with pytest.raises(InputError) as err:
        read_json(path)
    assert err.value.line == 2 and "byte 0xe9 at byte offset 15 of the file (byte 4 of the line)" in str(err.value)


def test_a_line_beyond_the_bound_is_refused(tmp_path, unicrs_record):
    from ecrflow.io import MAX_LINE_BYTES

    assert MAX_LINE_BYTES == 10 * 1024 * 1024  # the stated bound: 10 MB per line
    huge = json.dumps(dict(unicrs_record, padding="x" * MAX_LINE_BYTES))
    path = _write(tmp_path, [json.dumps(unicrs_record), huge])
    with pytest.raises(InputError) as err:
        list(read_dialogs(path, require_emotion=False))
    assert err.value.line == 2 and "line longer than 10 MB (ecrflow.io.MAX_LINE_BYTES" in str(err.value)
    assert "expected one conversation object per line" in str(err.value)


def test_a_line_at_the_bound_is_read(tmp_path, monkeypatch, unicrs_record):
    import ecrflow.io

    line = json.dumps(unicrs_record)
    monkeypatch.setattr(ecrflow.io, "MAX_LINE_BYTES", len(line.encode()))
    path = tmp_path / "train_data_dbpedia_raw.jsonl"
    path.write_bytes((line + "\r\n" + line + "\n").encode())
    assert len(list(read_dialogs(path, require_emotion=False))) == 2
    path.write_bytes((line + " \n").encode())  # one byte over
    with pytest.raises(InputError, match="line longer than"):
        list(read_dialogs(path, require_emotion=False))


def test_a_huge_line_within_the_bound_is_read(tmp_path, unicrs_record):
    unicrs_record["messages"][0]["text"] = "a" * (5 * 1024 * 1024)  # 5 MB in one message, under 10 MB a line
    path = _write(tmp_path, [json.dumps(unicrs_record)])
    (d,) = read_dialogs(path, require_emotion=False)
    assert len(d.messages[0].text) == 5 * 1024 * 1024
