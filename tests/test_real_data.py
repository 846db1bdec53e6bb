"""Real ReDial data in (issue 13, point 1): the 500-conversation real sample (data/redial_real_sample, UniCRS's
label-free format with a real movie KG) through validation and processing, and a failing rule's report."""

import json
import shutil
from types import SimpleNamespace

import pytest

from ecrflow.constants import SPLITS
from ecrflow.data.items import build_items
from ecrflow.data.process import process_split, split_summary
from ecrflow.data.redial import ReadStats
from ecrflow.data.turns import EmotionRule
from ecrflow.data.validate import validate_raw
from ecrflow.errors import InputError
from ecrflow.kg import load_id_map

from conftest import REPO, snakemake

SAMPLE = REPO / "data" / "redial_real_sample"
PATTERN = "{split}_data_dbpedia_raw.jsonl"


@pytest.fixture(scope="module")
def report():
    return validate_raw(SAMPLE, dialog_pattern=PATTERN, require_emotion=False, unknown_entities="drop")


@pytest.fixture(scope="module")
def entity2id():
    return load_id_map(SAMPLE / "entity2id.json", "entity")


def test_real_sample_validates_with_its_quirks_counted(report):
    assert report["kg"] == {"entities": 24630, "relations": 5, "triples": 63541, "edges": 120507}
    counts = {s: report["splits"][s]["counts"] for s in SPLITS}
    assert {s: (c["dialogs"], c["messages"]) for s, c in counts.items()} == {
        "train": (400, 4871), "valid": (50, 592), "test": (50, 590)}
    # The real files' quirks, as the sample holds them (README: a null name, [] questions).
    assert counts["test"]["movie_mentions_null_name"] == 1
    assert report["splits"]["test"]["warning_examples"]["movie_mentions_null_name"] == [
        "test_data_dbpedia_raw.jsonl:25 movieMentions['50']"]
    assert [counts[s]["initiator_questions_empty_list"] for s in SPLITS] == [7, 0, 1]
    assert counts["train"]["respondent_questions_empty_list"] == 5
    assert all(c["messages_from_unknown_sender_dropped"] == 0 and c["empty_dialogs_skipped"] == 0
               for c in counts.values())
    assert all(report["splits"][s]["seeker_messages_with_emotion"] == 0 for s in SPLITS)  # label-free


def test_real_sample_processes_into_the_expected_samples(entity2id):
    tables = {s: process_split(SAMPLE / PATTERN.format(split=s), entity2id, EmotionRule(), require_emotion=False)
              for s in SPLITS}
    summary = {s: split_summary(t, ReadStats()) for s, t in tables.items()}
    assert {s: (v["dialogs"], v["turns"], v["recommender_turns"]) for s, v in summary.items()} == {
        "train": (400, 4871, 2457), "valid": (50, 592, 300), "test": (50, 590, 295)}
    # Recommendation samples (turn, movie): the README's popularity baseline scores 197 test targets.
    assert {s: v["rec_items"] for s, v in summary.items()} == {"train": 1509, "valid": 191, "test": 197}
    assert summary["test"]["feedback"] == {"like": 136, "dislike": 7, "not_said": 54}
    items = build_items({s: t["sequences"] for s, t in tables.items()}, tables["train"]["rec"], entity2id)
    assert items.num_rows == 1325 and items.column("name").null_count == 0
    # No emotion labels: every sample weighs as neutral, the reference's default.
    assert {tuple(x) for x in tables["test"]["rec"].column("next_emotions").to_pylist()} == {("neutral",)}


def test_real_sample_label_free_path_up_to_the_annotator(tmp_path, entity2id):
    """data.emotions: pipeline without the LLM: the annotator's utterances, then labels in emotion_label's
    format (the classifier's place) read back by process_split as a labelled file."""
    from ecrflow.emotion.annotate import seeker_utterances
    from ecrflow.emotion.classifier import seeker_texts
    from ecrflow.io import iter_jsonl, write_jsonl

    assert len(seeker_utterances(SAMPLE / PATTERN.format(split="train"), max_history=6)) == 2414
    for split in SPLITS:
        dialogs = [d for _, d in iter_jsonl(SAMPLE / PATTERN.format(split=split), expected="a conversation")]
        where, _, empty = seeker_texts(dialogs)
        for d, m in where:
            dialogs[d]["messages"][m]["emotion"] = {"like": 0.7, "curious": 0.2, "neutral": 0.1}
        labelled = tmp_path / f"{split}_data_dbpedia_emo.jsonl"
        write_jsonl(labelled, dialogs)
        rec = process_split(labelled, entity2id, EmotionRule(), require_emotion=True, emotion_source="pipeline")["rec"]
        assert rec.num_rows == {"train": 2457, "valid": 300, "test": 295}[split]
        assert empty == 0  # the sample has no seeker message without text (the hand-made tests have one)


def test_run_shows_one_block_and_logs_the_traceback(tmp_path, capsys):
    from ecrflow.smk import run

    def step():
        raise InputError("/data/test.jsonl", "movieMentions['50'] must be a movie name string or null, got int",
                         line=25, field="movieMentions['50']", hint="fix the line", expected="a name or null")

    log = tmp_path / "rule.log"
    fake = SimpleNamespace(rule="validate_input", log=[str(log)], threads=1, resources=SimpleNamespace(gpu=0))
    with pytest.raises(SystemExit) as done:
        run(fake, step)
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("must be a movie name string") == 1
    assert err.splitlines() == [
        "ecrflow: rule validate_input failed",
        "  /data/test.jsonl, line 25: movieMentions['50'] must be a movie name string or null, got int; expected a "
        "name or null",
        "  field: movieMentions['50']",
        "  hint:  fix the line",
        f"  log:   {log} (with the traceback)",
    ]
    text = log.read_text()
    assert "Traceback" in text and "must be a movie name string" in text


@pytest.mark.e2e
def test_failing_rule_prints_its_error_once_without_a_traceback(tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(SAMPLE, raw)
    path = raw / "test_data_dbpedia_raw.jsonl"
    lines = path.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["messages"][1]["text"] = None
    lines[2] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "cfg.yaml").write_text(json.dumps(
        {"data": {"raw_dir": str(raw), "dialog_pattern": PATTERN, "emotions": "none", "reviews": None}}))
    proc = snakemake(tmp_path, "results/paper/data/validation.json", "--configfile", str(tmp_path / "cfg.yaml"),
                     check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out
    assert out.count("message 1: 'text' must be a string") == 1
    block = out[out.index("ecrflow: rule validate_input failed"):].splitlines()
    block = block[:next(i for i, ln in enumerate(block[1:], 1) if not ln.startswith("  "))]
    assert block[1:3] == [f"  {path}, line 3: message 1: 'text' must be a string", "  field: messages[1].text"]
    assert block[3].startswith("  hint:  each line is one ReDial conversation")
    assert block[4] == "  log:   results/paper/logs/validate_input.log (with the traceback)" and len(block) == 5
    log = (tmp_path / "results" / "paper" / "logs" / "validate_input.log").read_text()
    assert "Traceback" in log and "message 1: 'text' must be a string" in log
