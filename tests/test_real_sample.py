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
    # The KG carries more: a short walk from the context entities ranks far above the co-occurrence rows.
    assert base["kg_walk"]["R@10"] > 2 * base["cooccurrence"]["R@10"]
    assert base["kg_walk"]["R@50"] > base["cooccurrence"]["R@50"]


def test_real_sample_ecr_beats_popularity_and_reaches_the_cooccurrence_baseline(real_ws):
    """Issue 13's bar, seeded: with the copy mixture over the KG rows and the global entities' rows and the
    popularity prior (config/real_sample.yaml, chosen by validation; README, 'The real sample')."""
    ecr = rows(real_ws / TARGETS[0])["ecr"]
    base = rows(real_ws / TARGETS[2])
    assert ecr["R@10"] > 2 * base["popularity"]["R@10"] and ecr["R@50"] > base["popularity"]["R@50"]
    assert ecr["R@10"] >= base["cooccurrence"]["R@10"]
    assert ecr["R@50"] >= base["cooccurrence"]["R@50"]


def test_real_sample_every_variant_learns_above_popularity(real_ws):
    """Plain h . E ranked below counted popularity here (UniCRS R@50 0.081 against 0.086 before the prior and
    the KG rows); every row of Table 3 is now well above it."""
    t3, base = rows(real_ws / TARGETS[1]), rows(real_ws / TARGETS[2])
    for name, row in t3.items():
        assert row["R@10"] > 2 * base["popularity"]["R@10"] and row["R@50"] > base["popularity"]["R@50"], name


def test_real_sample_global_entities_add_to_the_kg_rows_on_validation(real_ws):
    """What the learnt mixture adds to the KG rows shows on validation (183 targets; the chosen epoch's
    R@50): the variants with the global entities' rows rank more targets in their top 50 (75 against 66).
    On the test split it does not hold up: ECR-LG 81 against ECR-L 79, ECR and UniCRS 80 each (README, 'The
    real sample')."""
    def valid_r50(variant):
        m = json.loads((real_ws / f"results/recommend/{variant}/train_metrics.json").read_text())
        return m["epochs"][m["best_epoch"]]["valid"]["recall@50"]

    assert valid_r50("ecr_lg") > valid_r50("ecr_l") and valid_r50("ecr") > valid_r50("unicrs")
