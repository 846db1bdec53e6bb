import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def ecr_record() -> dict:
    return json.loads((FIXTURES / "ecr_emo_dialog.jsonl").read_text())


@pytest.fixture
def unicrs_record() -> dict:
    return json.loads((FIXTURES / "unicrs_dbpedia_raw_dialog.jsonl").read_text())


def entity2id_for(*records: dict) -> dict[str, int]:
    """Ids for every URI of the records, sorted (as a stand-in for the release's entity2id)."""
    uris = sorted({u for r in records for m in r["messages"] for u in m["entity"] + m["movie"]})
    return {u: i for i, u in enumerate(uris)}


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's workflow with ``workdir`` as the working directory."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run (empty when nothing is to be done)."""
    jobs: dict[str, int] = {}
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return jobs
    start = lines.index("Job stats:") + 3
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="session")
def toy_workspace(tmp_path_factory) -> Path:
    """A workspace where the toy DAG's data targets were built once."""
    ws = tmp_path_factory.mktemp("toy_ws")
    snakemake(ws, "--configfile", str(REPO / "config" / "toy.yaml"))
    return ws


@pytest.fixture
def copy_workspace(toy_workspace, tmp_path):
    """A private copy of the built toy workspace (with Snakemake's metadata), for tests that change it."""

    def make() -> Path:
        dst = tmp_path / "ws"
        shutil.copytree(toy_workspace, dst, symlinks=True)
        return dst

    return make
