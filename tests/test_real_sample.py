"""The real-sample run (issue 13, point 2): data/redial_real_sample (500 real ReDial conversations with a real
movie KG, label-free) through config/real_sample.yaml: SmolLM2 emotion annotation, the classifier, the
labelled dialogues, KG, co-occurrence, stages 1 and 2, Tables 1 and 3 and baselines.csv, with small models
built from the sample's own dialogues. Built once per session, beside the toy workspace (conftest)."""

import csv
import json

import pytest

from conftest import REAL_SAMPLE_TARGETS

pytestmark = pytest.mark.e2e

TARGETS = REAL_SAMPLE_TARGETS


@pytest.fixture
def real_ws(real_sample_workspace):
    return real_sample_workspace  # built once per session (conftest: beside the toy workspace)


def rows(path) -> dict[str, dict[str, float]]:
    with open(path) as f:
        return {r["model"]: {k: float(v) for k, v in r.items() if k != "model"} for r in csv.DictReader(f)}


def test_real_sample_runs_the_label_free_path_with_its_quirks_counted(real_ws):
    report = json.loads((real_ws / "results/data/validation.json").read_text())
    assert report["splits"]["test"]["counts"]["movie_mentions_null_name"] == 1
    assert report["kg"]["entities"] == 24630
    summary = json.loads((real_ws / "results/emotion/annotation_summary.json").read_text())
    assert summary["labelled"] == summary["utterances"] == 60 and summary["request_errors"] == 0
    # Every seeker message of every split carries the pipeline's labels (the ECR release format).
    for split in ("train", "valid", "test"):
        path = real_ws / f"results/emotion/labelled/{split}_data_dbpedia_emo.jsonl"
        dialogs = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(dialogs) == {"train": 400, "valid": 50, "test": 50}[split]
        seeker = [m for d in dialogs for m in d["messages"] if m["senderWorkerId"] == d["initiatorWorkerId"]]
        assert seeker and all("emotion" in m for m in seeker)
    # The global entities carry content: emotion-filtered co-occurrence over the labelled training dialogues.
    stats = json.loads((real_ws / "results/data/kg/cooccurrence_stats.json").read_text())
    assert stats["emotion_filter"] and stats["rows_with_pairs"] > 1000


def test_real_sample_tables_score_every_test_target(real_ws):
    t1, t3 = rows(real_ws / TARGETS[0]), rows(real_ws / TARGETS[1])
    assert set(t1) == {"unicrs", "ecr"} and set(t3) == {"unicrs", "ecr_l", "ecr_ls", "ecr_lg", "ecr"}
    assert all(r["samples"] == 197 for r in [*t1.values(), *t3.values()])
    base = rows(real_ws / TARGETS[2])
    # The co-occurrence signal is real on real dialogues (it was empty without emotion labels before).
    assert base["cooccurrence"]["R@10"] > 2 * base["popularity"]["R@10"]
    assert base["cooccurrence"]["R@50"] > base["popularity"]["R@50"]


def test_real_sample_ecr_learns_what_the_global_entities_carry(real_ws):
    """With the copy mixture (config/real_sample.yaml) ECR uses the co-occurrence rows: well above popularity
    and UniCRS, whose h . E alone ranks by popularity on this little data."""
    t1, base = rows(real_ws / "results/tables/table1.csv"), rows(real_ws / "results/tables/baselines.csv")
    ecr = t1["ecr"]
    assert ecr["R@10"] > 2 * base["popularity"]["R@10"] and ecr["R@50"] > base["popularity"]["R@50"]
    assert ecr["R@10"] > t1["unicrs"]["R@10"] and ecr["R@50"] > t1["unicrs"]["R@50"]


def test_real_sample_popularity_prior_lifts_unicrs_to_the_count(real_ws):
    """Plain h . E ranked below counted popularity on R@50 (UniCRS 0.081 against 0.086); started from the
    prior it is above it."""
    unicrs, base = rows(real_ws / TARGETS[0])["unicrs"], rows(real_ws / TARGETS[2])
    assert unicrs["R@50"] > base["popularity"]["R@50"]


def test_real_sample_ecr_reaches_the_cooccurrence_baseline_on_r10(real_ws):
    """With the copy mixture and the popularity prior (config/real_sample.yaml, chosen by validation)."""
    ecr = rows(real_ws / TARGETS[0])["ecr"]
    base = rows(real_ws / TARGETS[2])
    assert ecr["R@10"] > base["popularity"]["R@10"]
    assert ecr["R@10"] >= base["cooccurrence"]["R@10"]


@pytest.mark.xfail(strict=True, reason="issue 13: ECR stays 1 test target short of the co-occurrence baseline "
                                        "on R@50 on the real sample (README, 'The real sample')")
def test_real_sample_ecr_reaches_the_cooccurrence_baseline_on_r50(real_ws):
    ecr = rows(real_ws / TARGETS[0])["ecr"]
    base = rows(real_ws / TARGETS[2])
    assert ecr["R@50"] >= base["cooccurrence"]["R@50"]
