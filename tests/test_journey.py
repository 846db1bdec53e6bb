"""A new user's first real run, offline: the real sample fetched as a release archive from a loopback file
server (checksum verified, a corrupted copy rejected), SmolLM2 downloaded under its hub id from a loopback
hub and used offline, the real-sample tables in results/real_sample/, and the toy run beside them in
results/toy/ with nothing planned again for either."""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import JOURNEY_CONFIG, REPO, SMOLLM2_HUB_ID, TOY_CONFIG, dry_run
from ecrflow.fetch import read_lock

pytestmark = pytest.mark.e2e
REAL = str(REPO / "config" / "real_sample.yaml")
SAMPLE = REPO / "data" / "redial_real_sample"


def test_real_sample_was_fetched_and_verified(real_sample_workspace, journey):
    ws = real_sample_workspace
    lock = read_lock(ws / "fetch.lock.json")
    assert lock["data"]["real_sample"]["sha256"] == journey.sha256
    assert lock["data"]["real_sample"]["size"] == len(journey.archive)
    fetched = ws / "data" / "redial_real_sample"
    assert not fetched.is_symlink()
    for f in SAMPLE.iterdir():
        assert filecmp.cmp(f, fetched / f.name, shallow=False), f.name
    assert [r for r in journey.files.requests if "redial_real_sample" in r] == ["GET /redial_real_sample.tar.gz"]
    log = (ws / "results" / "real_sample" / "logs" / "fetch_data.log").read_text()
    assert f"real_sample: downloaded, sha256 {journey.sha256}" in log


def test_annotation_model_came_from_the_hub_at_a_recorded_commit(real_sample_workspace, journey):
    ws = real_sample_workspace
    folder = ws / "results" / "models" / "hub" / SMOLLM2_HUB_ID.replace("/", "--")
    record = json.loads((folder / "ecrflow_hub.json").read_text())
    commit = journey.hub.commits[SMOLLM2_HUB_ID]
    assert record["revision"] == commit and record["repo"] == SMOLLM2_HUB_ID
    assert read_lock(ws / "fetch.lock.json")["models"][SMOLLM2_HUB_ID] == {"revision": commit}
    # the downloaded weights are the served ones, byte for byte
    served = journey.shared / "results" / "models" / "smollm2-135m-instruct" / "model.safetensors"
    assert hashlib.sha256((folder / "model.safetensors").read_bytes()).digest() == \
        hashlib.sha256(served.read_bytes()).digest()
    summary = json.loads((ws / "results" / "real_sample" / "emotion" / "annotation_summary.json").read_text())
    assert summary["labelled"] == summary["utterances"] == 60 and summary["request_errors"] == 0
    assert (ws / "results" / "real_sample" / "tables" / "table1.csv").exists()


def test_a_corrupted_release_is_rejected(tmp_path, journey):
    """The same entry against a copy of the archive with one byte changed: the fetch fails naming the file
    and both checksums, and keeps nothing."""
    from servers import FileServer

    bad = bytearray(journey.archive)
    bad[len(bad) // 2] ^= 0xFF
    with FileServer({"redial_real_sample.tar.gz": bytes(bad)}) as server:
        over = journey.overlay()
        over["fetch"]["data"][0]["url"] = f"{server.url}/redial_real_sample.tar.gz"
        over["fetch"]["data"][0]["unpack_to"] = "data/fetched"
        (tmp_path / "over.yaml").write_text(yaml.safe_dump(over))
        proc = subprocess.run([sys.executable, "-m", "ecrflow.cli", "fetch", "--data-only", "--base",
                               str(REPO / "config" / "config.yaml"), "--configfile", REAL, "over.yaml"],
                              cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "redial_real_sample.tar.gz: sha256 mismatch" in proc.stderr
    assert f"expected {journey.sha256}" in proc.stderr
    assert f"found {hashlib.sha256(bytes(bad)).hexdigest()}" in proc.stderr
    assert not (tmp_path / "data" / "fetched").exists() and not list(tmp_path.rglob("*.tar.gz*"))


def _merge(src: Path, dst: Path) -> None:
    """Hard links of ``src``'s files into ``dst`` (a file already there is kept), as if both runs had been
    made in one folder: results/<run>/, the shared results/models, and Snakemake's records."""
    for path in src.rglob("*"):
        rel = path.relative_to(src)
        if rel.parts[0] not in ("results", ".snakemake", "data") or (dst / rel).exists() or path.is_dir():
            continue
        if rel.parts[:2] in ((".snakemake", "locks"), (".snakemake", "incomplete")):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            (dst / rel).symlink_to(os.readlink(path))
        else:
            os.link(path, dst / rel)


def test_toy_and_real_sample_runs_coexist(tmp_path, toy_workspace, real_sample_workspace):
    ws = tmp_path / "both"
    ws.mkdir()
    _merge(real_sample_workspace, ws)
    _merge(toy_workspace, ws)
    assert {p.name for p in (ws / "results").iterdir()} >= {"toy", "real_sample", "models"}
    # each config plans nothing: neither run's files are the other's, and the shared models are current
    assert dry_run(ws, "--configfile", TOY_CONFIG) == {}
    assert dry_run(ws, *[f"results/real_sample/tables/{t}.csv" for t in ("table1", "table3", "baselines")],
                   "--configfile", REAL, str(real_sample_workspace / JOURNEY_CONFIG)) == {}
