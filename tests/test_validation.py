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


def _lines(path):
    return path.read_text().splitlines()


def _put(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_a_conversation_id_in_two_splits_stops_validation_naming_both(raw):
    train, test = raw / "train_data_dbpedia_emo.jsonl", raw / "test_data_dbpedia_emo.jsonl"
    moved = json.loads(_lines(train)[4])
    lines = _lines(test)
    d = json.loads(lines[2])
    d["conversationId"] = moved["conversationId"]  # another dialogue under a training id
    lines[2] = json.dumps(d)
    _put(test, lines)
    with pytest.raises(InputError) as err:
        _validate(raw)
    msg = str(err.value)
    assert msg.startswith(f"{test}, line 3: conversationId {moved['conversationId']} also in "
                          "train_data_dbpedia_emo.jsonl, line 5")
    assert "data.split_overlap: allow" in msg and err.value.field == "conversationId"


def test_a_training_dialogue_copied_into_test_is_found_by_its_messages(raw):
    train, test = raw / "train_data_dbpedia_emo.jsonl", raw / "test_data_dbpedia_emo.jsonl"
    copied = json.loads(_lines(train)[7])
    copied["conversationId"] = 987654  # a new id: only the messages give it away
    _put(test, _lines(test) + [json.dumps(copied)])
    n = len(_lines(test))
    with pytest.raises(InputError, match=rf"line {n}: the same messages also in train_data_dbpedia_emo.jsonl, line 8"):
        _validate(raw)
    report = _validate(raw, split_overlap="allow")  # the switch: counted, with the example
    assert report["split_overlap"] == {"policy": "allow", "conversation_ids": 0, "identical_dialogues": 1,
                                       "examples": [f"test_data_dbpedia_emo.jsonl, line {n}: the same messages "
                                                    "also in train_data_dbpedia_emo.jsonl, line 8"]}


def test_unknown_movie_mentions_are_counted_with_examples():
    """The shipped real sample has one: test dialogue 1382, "I really liked @115908" (no such movieMentions
    key). It stays in the text as the reference keeps it; the report counts it."""
    from pathlib import Path

    sample = Path(__file__).resolve().parents[1] / "data" / "redial_real_sample"
    report = validate_raw(sample, dialog_pattern="{split}_data_dbpedia_raw.jsonl", require_emotion=False)
    test = report["splits"]["test"]
    assert test["counts"]["unknown_movie_mentions"] == 1
    assert test["warning_examples"]["unknown_movie_mentions"] == ["dialog 1382, message 3: @115908"]
    assert report["splits"]["train"]["counts"]["unknown_movie_mentions"] == 0
    assert report["split_overlap"]["conversation_ids"] == report["split_overlap"]["identical_dialogues"] == 0


def test_a_missing_self_loop_blames_relation2id(raw):
    r2i = json.loads((raw / "relation2id.json").read_text())
    del r2i["self_loop"]
    (raw / "relation2id.json").write_text(json.dumps(r2i))
    with pytest.raises(InputError) as err:
        _validate(raw)
    assert str(err.value).startswith(f"{raw / 'relation2id.json'}: no 'self_loop' relation")
    assert "dbpedia_subkg" not in str(err.value) and err.value.field == "self_loop"


def test_malformed_json_says_where_once(raw):
    path = raw / "valid_data_dbpedia_emo.jsonl"
    lines = _lines(path)
    lines[1] = '{"conversationId": "x, "messages": []}'  # an unterminated string
    _put(path, lines)
    with pytest.raises(InputError) as err:
        _validate(raw)
    assert f"{path}, line 2: malformed JSON (" in str(err.value)
    assert " at at " not in str(err.value) and "at column" in str(err.value)
    (raw / "entity2id.json").write_text('{"<a>": 0, "<b')
    with pytest.raises(InputError, match=r"entity2id.json, line 1: malformed JSON \(Unterminated string at column 12\)"):
        _validate(raw)


def test_a_raw_file_changed_with_its_time_kept_is_marked_changed(raw, tmp_path):
    """cp -p (or rsync -t, an unpacked archive) keeps the modification time: the content hash, compared with
    validation.json's, gives the file a new one so that what read it reruns; once, and not for an unchanged
    file."""
    import os
    import shutil

    from ecrflow.data.validate import mark_changed_raw_files
    from ecrflow.io import write_json

    names = ["train_data_dbpedia_emo.jsonl", "test_data_dbpedia_emo.jsonl", "entity2id.json"]
    validation, cache = tmp_path / "validation.json", tmp_path / "cache" / "fp.json"
    write_json(validation, _validate(raw))
    assert mark_changed_raw_files(raw, names, validation, cache) == []
    test = raw / "test_data_dbpedia_emo.jsonl"
    edited = tmp_path / "edited.jsonl"
    edited.write_text(test.read_text().replace("movie", "film", 1))
    old = test.stat().st_mtime_ns
    os.utime(edited, ns=(old, old))
    shutil.copy2(edited, test)  # cp -p: new content, the old time
    assert test.stat().st_mtime_ns == old
    [line] = mark_changed_raw_files(raw, names, validation, cache)
    assert line.startswith(f"{test}: content changed since {validation}") and "marked as changed" in line
    assert test.stat().st_mtime_ns > validation.stat().st_mtime_ns  # newer than what was made from it
    assert mark_changed_raw_files(raw, names, validation, cache) == []  # already newer: nothing to do
    assert (raw / "train_data_dbpedia_emo.jsonl").stat().st_mtime_ns < validation.stat().st_mtime_ns


def test_half_written_files_of_dead_writers_are_removed(tmp_path):
    import os
    import subprocess

    from ecrflow.io import _HOST, atomic_path, remove_orphan_parts

    dead = subprocess.Popen(["true"])
    dead.wait()
    sub = tmp_path / "tables"
    sub.mkdir()
    orphan = sub / f".table1.csv.{_HOST}-{dead.pid}.k2j3.part"
    running = sub / f".table1.csv.{_HOST}-{os.getpid()}.a9x.part"
    elsewhere = sub / f".table1.csv.node_17-{dead.pid}.b8y.part"  # a cluster node's: not ours to judge
    for p in (orphan, running, elsewhere):
        p.write_text("half")
    assert remove_orphan_parts(tmp_path) == [orphan]
    assert running.exists() and elsewhere.exists() and not orphan.exists()
    with atomic_path(sub / "t.csv") as tmp:  # the writer's own name is what the cleanup reads
        assert tmp.name.startswith(f".t.csv.{_HOST}-{os.getpid()}.") and tmp.name.endswith(".part")
        assert remove_orphan_parts(tmp_path) == []


def test_a_stale_lock_gets_the_commands_that_recover(tmp_path):
    import subprocess

    from ecrflow.smk import stale_lock_hint

    argv = ["snakemake", "--profile", "profiles/local", "--configfile", "config/toy.yaml", "-n"]
    assert stale_lock_hint(argv, str(tmp_path)) is None  # no lock
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text("x")
    hint = stale_lock_hint(argv, str(tmp_path))
    assert "  snakemake --unlock --profile profiles/local --configfile config/toy.yaml\n" in hint
    assert "\n  snakemake --profile profiles/local --configfile config/toy.yaml\n" in hint
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 30"], cwd=tmp_path)
    try:
        import time

        time.sleep(0.3)
        assert stale_lock_hint(argv, str(tmp_path)) is None  # a Snakemake runs here: its lock is not stale
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("error, hint", [
    (PermissionError(13, "Permission denied", "results/toy/tables/.table1.csv.part"), "not writable by you"),
    (OSError(28, "No space left on device", "results/toy/work/recommend/ecr/step.pt"), "the disk is full"),
])
def test_a_file_system_refusal_names_the_path_in_a_short_block(error, hint):
    from ecrflow.smk import failure_block

    block = failure_block(error, "rec_table", "results/toy/logs/table1.log")
    lines = block.splitlines()
    assert lines[0] == "ecrflow: rule rec_table failed" and lines[1].strip() == (
        f"{type(error).__name__}: {error.strerror}")
    assert f"path: {error.filename}" in block and hint in block and len(lines) == 5
