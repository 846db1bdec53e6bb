"""The workflow as a user runs it: the toy DAG, reruns of exactly the dependent rules, early failures."""

import csv
import json
import shutil

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.slow
TOY = str(REPO / "config" / "toy.yaml")


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_toy_dag_outputs(toy_workspace):
    res = toy_workspace / "results"
    stats = {r["split"]: r for r in _csv(res / "tables" / "dataset_stats.csv")}
    assert int(stats["train"]["dialogs"]) == 600 and int(stats["test"]["dialogs"]) == 100
    assert 0.02 < float(stats["train"]["dislike_share"]) < 0.10
    base = {r["model"]: r for r in _csv(res / "tables" / "baselines.csv")}
    # The toy data carries a learnable signal: training co-occurrence beats popularity by far.
    assert float(base["cooccurrence"]["R@10"]) > float(base["popularity"]["R@10"]) + 0.2
    # Leaving the sample's own dialog out can only remove evidence for the gold item.
    assert float(base["cooccurrence@train"]["R@10"]) >= float(base["cooccurrence@train_leave_dialog_out"]["R@10"])
    rec = pq.read_table(res / "data" / "processed" / "train_rec.parquet")
    assert {"rec", "rec_feedback", "next_emotions", "entity_emotions"} <= set(rec.column_names)
    meta = json.loads((res / "data" / "kg" / "kg_meta.json").read_text())
    assert meta["n_relation"] == 7 and meta["n_entity"] == int(stats["train"]["entities"]) + 1
    assert json.loads((res / "data" / "item_ids.json").read_text()) == sorted(
        pq.read_table(res / "data" / "items.parquet").column("entity_id").to_pylist())
    assert (res / "logs" / "cooccurrence.log").read_text().strip().endswith("rule cooccurrence done")


def test_built_workspace_has_nothing_to_do(toy_workspace):
    out = snakemake(toy_workspace, "-n", "--configfile", TOY).stdout
    assert planned_jobs(out) == {}


@pytest.mark.parametrize("change, expected", [
    ({"cooccurrence": {"top_n_labels": 2}}, {"cooccurrence": 1, "baselines": 1, "all": 1}),
    ({"kg": {"reverse": "separate"}}, {"kg_tensors": 1, "dataset_stats": 1, "all": 1}),
    ({"emotion": {"threshold": 0.2}},
     {"process_split": 3, "items": 1, "cooccurrence": 1, "baselines": 1, "dataset_stats": 1, "all": 1}),
    ({"toy": {"seed": 8}},
     {"toy_data": 1, "validate_input": 1, "process_split": 3, "kg_tensors": 1, "items": 1, "cooccurrence": 1,
      "baselines": 1, "dataset_stats": 1, "all": 1}),
])
def test_a_changed_parameter_reruns_exactly_its_dependents(copy_workspace, change, expected):
    ws = copy_workspace()
    (ws / "over.yaml").write_text(yaml.safe_dump(change))
    out = snakemake(ws, "-n", "--configfile", TOY, str(ws / "over.yaml")).stdout
    assert planned_jobs(out) == expected


def test_same_config_gives_identical_tables(toy_workspace, tmp_path):
    snakemake(tmp_path, "--configfile", TOY)
    for table in ("dataset_stats.csv", "baselines.csv"):
        a = (toy_workspace / "results" / "tables" / table).read_bytes()
        assert a == (tmp_path / "results" / "tables" / table).read_bytes()


def test_bad_config_fails_before_any_job(copy_workspace):
    ws = copy_workspace()
    (ws / "bad.yaml").write_text("recommend:\n  learning_rate: 0.1\n")
    proc = snakemake(ws, "--configfile", TOY, str(ws / "bad.yaml"), check=False)
    assert proc.returncode != 0
    assert "recommend.learning_rate: unknown key" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr


def test_paper_config_without_data_names_the_missing_files(tmp_path):
    proc = snakemake(tmp_path, "-n", check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "missing input file(s): train_data_dbpedia_emo.jsonl" in text
    assert "ECR data release" in text


def test_invalid_input_stops_the_dag_at_validation(copy_workspace):
    ws = copy_workspace()
    processed = ws / "results" / "data" / "processed" / "train_rec.parquet"
    before = processed.stat().st_mtime_ns
    raw = ws / "results" / "toy" / "raw" / "valid_data_dbpedia_emo.jsonl"
    lines = raw.read_text().splitlines()
    lines[4] = lines[4][:-10]  # truncate one conversation
    raw.write_text("\n".join(lines) + "\n")
    proc = snakemake(ws, "--configfile", TOY, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "valid_data_dbpedia_emo.jsonl, line 5: malformed JSON" in text
    # validate_input failed, so nothing downstream ran: no validation report, processed files untouched.
    assert not (ws / "results" / "data" / "validation.json").exists()
    assert processed.stat().st_mtime_ns == before


def test_unicrs_variant_without_emotions(tmp_path):
    (tmp_path / "over.yaml").write_text(yaml.safe_dump(
        {"data": {"emotions": "none", "dialog_pattern": "{split}_data_dbpedia_raw.jsonl"}}))
    snakemake(tmp_path, "--configfile", TOY, str(tmp_path / "over.yaml"))
    rec = pq.read_table(tmp_path / "results" / "data" / "processed" / "test_rec.parquet")
    assert set(map(tuple, rec.column("next_emotions").to_pylist())) == {("neutral",)}
    assert (tmp_path / "results" / "toy" / "raw" / "train_data_dbpedia_raw.jsonl").exists()


def test_release_responses_rule(copy_workspace):
    ws = copy_workspace()
    raw = ws / "results" / "toy" / "raw"
    for split in ("train", "valid", "test"):
        rec = pq.read_table(ws / "results" / "data" / "processed" / f"{split}_rec.parquet")
        n = sum(bool(c) for c in rec.column("context").to_pylist())
        (raw / f"conv_unicrs_{split}.jsonl").write_text(
            "".join(json.dumps({"pred": f"System: try <movie> {k}", "label": ""}) + "\n" for k in range(n)))
    (ws / "over.yaml").write_text(yaml.safe_dump({"data": {"unicrs_responses": "conv_unicrs_{split}.jsonl"}}))
    target = "results/data/processed/test_unicrs_responses.parquet"
    # (targets go before --configfile, which takes every following argument as a file)
    out = snakemake(ws, target, "-n", "--configfile", TOY, str(ws / "over.yaml")).stdout
    assert planned_jobs(out) == {"unicrs_responses": 1}
    snakemake(ws, target, "--configfile", TOY, str(ws / "over.yaml"))
    table = pq.read_table(ws / target)
    assert table.column("resp").to_pylist()[:2] == ["try <movie> 0", "try <movie> 1"]


def test_lint_is_clean_but_for_conda(tmp_path):
    # One pip/conda environment serves every rule (envs/ecrflow.yaml), so per-rule conda lints are expected.
    proc = snakemake(tmp_path, "--lint", "--configfile", TOY, check=False)
    lints = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("    * ")]
    assert lints, "expected snakemake --lint to report at least the conda lint"
    assert all("conda environment or container" in line for line in lints), lints
