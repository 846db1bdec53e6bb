"""The raw-folder check: missing files, bad files, the unknown-entity policy, the report."""

import json

import pytest

from ecrflow.data.toy import ToyConfig, generate
from ecrflow.data.validate import validate_raw
from ecrflow.errors import InputError

PATTERN = "{split}_data_dbpedia_emo.jsonl"
REVIEWS = "movie_reviews_filted_0.1_confi.json"


@pytest.fixture
def raw(tmp_path):
    generate(tmp_path, ToyConfig(n_dialogs={"train": 30, "valid": 5, "test": 5}, n_movies=32))
    return tmp_path


def _validate(raw, **kw):
    args = dict(dialog_pattern=PATTERN, require_emotion=True, unknown_entities="drop", reviews=REVIEWS)
    return validate_raw(raw, **{**args, **kw})


def test_report_counts_and_fingerprints(raw):
    report = _validate(raw)
    assert report["splits"]["train"]["counts"]["dialogs"] == 30
    assert report["splits"]["valid"]["seeker_messages_with_emotion"] > 0
    assert report["kg"]["relations"] == 7 and report["reviews"]["reviews"] > 0
    assert set(report["fingerprint"]) == {"train_data_dbpedia_emo.jsonl", "valid_data_dbpedia_emo.jsonl",
                                          "test_data_dbpedia_emo.jsonl", "entity2id.json", "relation2id.json",
                                          "dbpedia_subkg.json", REVIEWS}
    # The toy data links a few URIs that are not in entity2id: dropped with a count, as UniCRS does.
    total = sum(s["counts"].get("unknown_entity_uris", 0) for s in report["splits"].values())
    assert total > 0


def test_unknown_entity_policy_error(raw):
    with pytest.raises(InputError) as err:
        _validate(raw, unknown_entities="error")
    assert "is not in entity2id.json" in str(err.value) and "line" in str(err.value)


def test_missing_files_are_listed_with_a_hint(raw):
    (raw / "entity2id.json").unlink()
    (raw / "test_data_dbpedia_emo.jsonl").unlink()
    with pytest.raises(InputError) as err:
        _validate(raw)
    msg = str(err.value)
    assert "missing input file(s): test_data_dbpedia_emo.jsonl, entity2id.json" in msg and "hint:" in msg


def test_malformed_entity2id(raw):
    (raw / "entity2id.json").write_text('{"<a>": 0, "<b>": 0}')
    with pytest.raises(InputError, match="share id 0"):
        _validate(raw)
    (raw / "entity2id.json").write_text('{"<a>": 0,\n "<b>": }')
    with pytest.raises(InputError) as err:
        _validate(raw)
    assert err.value.line == 2 and "malformed JSON" in str(err.value)


def test_bad_review_names_movie_and_index(raw):
    reviews = json.loads((raw / REVIEWS).read_text())
    movie = next(m for m, r in reviews.items() if r)
    reviews[movie][0]["votes"] = "many"
    (raw / REVIEWS).write_text(json.dumps(reviews))
    with pytest.raises(InputError) as err:
        _validate(raw)
    assert f"movie {movie!r}, review 0: 'votes' must be a non-negative int" in str(err.value)


def test_split_without_dialogs_is_an_error(raw):
    (raw / "valid_data_dbpedia_emo.jsonl").write_text("")
    with pytest.raises(InputError, match="no dialog with messages"):
        _validate(raw)


def test_unicrs_variant_validates_without_emotions(tmp_path):
    generate(tmp_path, ToyConfig(n_dialogs={"train": 10, "valid": 3, "test": 3}, n_movies=32, with_emotions=False,
                                 dialog_pattern="{split}_data_dbpedia_raw.jsonl"))
    report = validate_raw(tmp_path, dialog_pattern="{split}_data_dbpedia_raw.jsonl", require_emotion=False,
                          unknown_entities="drop", reviews=REVIEWS)
    assert report["splits"]["train"]["seeker_messages_with_emotion"] == 0
    with pytest.raises(InputError, match="seeker message without 'emotion'"):
        validate_raw(tmp_path, dialog_pattern="{split}_data_dbpedia_raw.jsonl", require_emotion=True,
                     unknown_entities="drop", reviews=None)


def test_real_file_quirks_are_counted_in_the_report(raw):
    """One conversation with every quirk of real ReDial files: the report counts each (0 where absent)."""
    path = raw / "test_data_dbpedia_emo.jsonl"
    lines = path.read_text().splitlines()
    d = json.loads(lines[1])
    d["movieMentions"][next(iter(d["movieMentions"]))] = None
    d["initiatorQuestions"] = []
    d["respondentQuestions"] = []
    d["messages"].insert(1, dict(d["messages"][0], senderWorkerId=-1))
    seeker = next(m for m in d["messages"] if m["senderWorkerId"] == d["initiatorWorkerId"])
    seeker.update(text="", emotion=[])
    lines[1] = json.dumps(d)
    path.write_text("\n".join(lines) + "\n")
    report = _validate(raw)
    counts = report["splits"]["test"]["counts"]
    assert {k: counts[k] for k in ("movie_mentions_null_name", "initiator_questions_empty_list",
                                   "respondent_questions_empty_list", "messages_from_unknown_sender_dropped",
                                   "seeker_messages_empty_text")} == dict.fromkeys(
        ("movie_mentions_null_name", "initiator_questions_empty_list", "respondent_questions_empty_list",
         "messages_from_unknown_sender_dropped", "seeker_messages_empty_text"), 1)
    assert report["splits"]["train"]["counts"]["movie_mentions_null_name"] == 0  # checked, none
    assert report["splits"]["test"]["warning_examples"]["messages_from_unknown_sender_dropped"][0].startswith(
        "test_data_dbpedia_emo.jsonl:2 message 1 (sender -1")
