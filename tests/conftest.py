import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ecrflow.config import SHARED_MODELS  # what every run shares (the converted SmolLM2), built once

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


@functools.cache
def local_env() -> dict[str, str]:
    """The environment for Snakemake runs that use no SLURM cluster. The SLURM executor plugin runs
    ``scontrol show config`` when Snakemake imports it; where the SLURM client is installed but no controller
    is up (CI between the SLURM tests) that waits 9-10 s on every Snakemake start. A stand-in ``scontrol``
    first on PATH answers at once (the plugin then assumes no cluster)."""
    if shutil.which("scontrol") is None:
        return dict(os.environ)
    shim = Path(tempfile.mkdtemp(prefix="ecrflow-no-slurm-")) / "scontrol"
    shim.write_text("#!/bin/sh\nexit 1\n")
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def snakemake_cmd(*args: str) -> list[str]:
    """The command line of a Snakemake run of this repository's workflow on the machine's 2 cores."""
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]


def snakemake(workdir: Path, *args: str, check: bool = True, slurm: bool = False) -> subprocess.CompletedProcess:
    """Run Snakemake on this repository's workflow with ``workdir`` as the working directory (``slurm``: the
    run submits to the local SLURM cluster, so the real SLURM commands are used)."""
    proc = subprocess.run(snakemake_cmd(*args), cwd=workdir, capture_output=True, text=True,
                          env=None if slurm else local_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def dry_run(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> job count that ``snakemake -n`` plans in ``workdir``. ``--nolock``: a dry run writes no output,
    so tests can share one built workspace instead of copying it."""
    return planned_jobs(snakemake(workdir, "-n", "--nolock", *args).stdout)


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


TIERS = ("unit", "dag", "e2e", "slurm")


def pytest_collection_modifyitems(items):
    """Tiers by marker (``pytest -m unit`` for the fast ones): dag (dry runs and early failures of the
    workflow), e2e (builds with Snakemake), slurm (a local SLURM cluster); every other test is unit."""
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS[1:]):
            item.add_marker(pytest.mark.unit)


TOY_CONFIG = str(REPO / "config" / "toy.yaml")
REAL_SAMPLE_TARGETS = [f"results/real_sample/tables/{t}.csv"
                       for t in ("table1", "table3", "baselines", "table2", "critic", "rl_comparison", "linking")]
REAL_SAMPLE_TARGETS.append("results/real_sample/interactive/system.json")  # what `ecrflow chat` loads
EMOTION_LABELLED = [f"results/toy/emotion/labelled/{s}_data_dbpedia_emo.jsonl" for s in ("train", "valid", "test")]


SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class Journey:
    """The internet of a new user's first real run, on loopback: the real sample as a release archive on a
    file server (fetched, verified, unpacked by the fetch_data rule) and SmolLM2-135M-Instruct under its hub
    id on a model hub (downloaded by the hub_model rule, then loaded offline by the annotation job)."""

    def __init__(self, shared: Path):
        """``shared``: the folder whose results/models (the converted SmolLM2) every build starts from."""
        import io
        import hashlib
        import tarfile

        from servers import FileServer, HubServer

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(REPO / "data" / "redial_real_sample", arcname="redial_real_sample")
        self.shared = shared
        self.archive = buf.getvalue()
        self.sha256 = hashlib.sha256(self.archive).hexdigest()
        self.files = FileServer({"redial_real_sample.tar.gz": self.archive})
        self.hub = HubServer({SMOLLM2_HUB_ID: shared / SHARED_MODELS / "smollm2-135m-instruct"})

    def overlay(self) -> dict:
        """Merged over config/real_sample.yaml: the raw files from the file server, the annotation LLM from
        the hub (an hf backend on the hub id; the same weights as the smollm2 kind)."""
        return {"fetch": {"lock": "fetch.lock.json", "data": [
                    {"name": "real_sample", "url": f"{self.files.url}/redial_real_sample.tar.gz",
                     "file": "redial_real_sample.tar.gz", "unpack_to": "data/redial_real_sample",
                     "sha256": self.sha256, "size": len(self.archive), "source": "ReDial (CC BY 4.0)",
                     "licence": "CC BY 4.0"}]},
                "emotion_labels": {"llm": {"kind": "hf", "hf": {"model": SMOLLM2_HUB_ID}}}}

    def close(self):
        self.files.close()
        self.hub.close()


JOURNEY_CONFIG = "journey.yaml"  # the overlay, written into the real-sample workspace


def _real_sample(ws: Path, journey: Journey) -> tuple[list[str], dict]:
    import yaml

    (ws / JOURNEY_CONFIG).write_text(yaml.safe_dump(journey.overlay()))
    return ([*REAL_SAMPLE_TARGETS, "--configfile", str(REPO / "config" / "real_sample.yaml"),  # targets first
             str(ws / JOURNEY_CONFIG)], {"HF_ENDPOINT": journey.hub.url})


def _emotion_pipeline(ws: Path, journey: Journey) -> tuple[list[str], dict]:
    import yaml

    (ws / "over.yaml").write_text(yaml.safe_dump(
        {"data": {"emotions": "pipeline", "dialog_pattern": "{split}_data_dbpedia_raw.jsonl"}}))
    return ["results/toy/data/processed/train_rec.parquet", *EMOTION_LABELLED, "--configfile", TOY_CONFIG,
            str(ws / "over.yaml")], {}


# The session's Snakemake builds that need nothing but the repository: fixture name -> its arguments (given
# the empty workspace). Whichever fixture is asked for first starts every build the selected tests use, side
# by side: each build is a chain of one-thread jobs with stretches of one job at a time (annotation, the
# classifier, the data rules, the tables), so two or three together keep both cores busy where one leaves
# one idle. The first request waits for all of them, so no other test runs beside a build (timings of the
# loopback-server tests stay those of an idle machine); each fixture then raises its own build's failure.
BUILDS = {
    # The toy build is the README's command (the local profile), so its terminal output is what users see.
    "toy_workspace": lambda ws, journey: (["--profile", str(REPO / "profiles" / "local"), "--configfile", TOY_CONFIG],
                                          {}),
    "real_sample_workspace": _real_sample,
    "emotion_pipeline_workspace": _emotion_pipeline,
}


def _build_shared_models(root: Path) -> Path:
    """The converted SmolLM2 that every run shares (results/models), built once; each workspace then gets it
    as hard links with its Snakemake record, as a second run finds what the first one made."""
    shared = root / "shared"
    shared.mkdir(exist_ok=True)
    proc = subprocess.run(snakemake_cmd(f"{SHARED_MODELS}/smollm2-135m-instruct", "--configfile", TOY_CONFIG),
                          cwd=shared, capture_output=True, text=True, env=local_env())
    if proc.returncode:
        raise AssertionError(f"building the shared models failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return shared


def _with_shared_models(ws: Path, shared: Path) -> None:
    shutil.copytree(shared / SHARED_MODELS, ws / SHARED_MODELS, copy_function=os.link)
    shutil.copytree(shared / ".snakemake" / "metadata", ws / ".snakemake" / "metadata")


class _Build:
    def __init__(self, name: str, ws: Path, journey: Journey):
        self.name, self.ws = name, ws
        self.log = ws.parent / f"{ws.name}.log"
        _with_shared_models(ws, journey.shared)
        args, env = BUILDS[name](ws, journey)
        with open(self.log, "w") as log:  # its own process group, so a stop takes its jobs with it
            self.proc = subprocess.Popen(snakemake_cmd(*args), cwd=ws, stdout=log, stderr=subprocess.STDOUT,
                                         env={**local_env(), **env}, start_new_session=True)

    def result(self) -> Path:
        if self.proc.wait() != 0:
            raise AssertionError(f"the {self.name} build failed ({self.proc.returncode}):\n"
                                 f"{self.log.read_text()[-6000:]}")
        return self.ws

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait()


# A workspace built earlier with the same config instead of a new build (faster iteration on the e2e
# assertions): the toy DAG (config/toy.yaml) and the real-sample run (config/real_sample.yaml).
REUSE = {"toy_workspace": "ECRFLOW_TOY_WORKSPACE", "real_sample_workspace": "ECRFLOW_REAL_SAMPLE_WORKSPACE"}


def _reused(name: str) -> Path | None:
    path = os.environ.get(REUSE.get(name, ""))
    return Path(path) if path else None


@pytest.fixture(scope="session")
def journey(tmp_path_factory):
    """The loopback file server and hub of the real-sample build (see Journey), up for the whole session."""
    j = Journey(_build_shared_models(tmp_path_factory.mktemp("models")))
    yield j
    j.close()


@pytest.fixture(scope="session")
def _builds(request, tmp_path_factory):
    needed = {name for item in request.session.items for name in BUILDS if name in getattr(item, "fixturenames", ())
              and not _reused(name)}
    builds = {}
    if not needed:
        yield builds
        return
    journey = request.getfixturevalue("journey")
    try:  # an interrupted wait stops the builds too
        for name in sorted(needed):
            builds[name] = _Build(name, tmp_path_factory.mktemp(name), journey)
        for build in builds.values():
            build.proc.wait()
        yield builds
    finally:
        for build in builds.values():
            build.stop()


def _built(request, name: str) -> Path:
    builds = request.getfixturevalue("_builds")
    if name not in builds:  # asked for dynamically, not seen at collection
        journey = request.getfixturevalue("journey")
        builds[name] = _Build(name, request.getfixturevalue("tmp_path_factory").mktemp(name), journey)
    return builds[name].result()


@pytest.fixture(scope="session")
def toy_workspace(request) -> Path:
    """The whole toy DAG, built once per test session. Tests only read it: those that change a workspace
    take a copy (copy_workspace), dry runs use it as it is (dry_run)."""
    return _reused("toy_workspace") or _built(request, "toy_workspace")


@pytest.fixture(scope="session")
def real_sample_workspace(request) -> Path:
    """data/redial_real_sample through config/real_sample.yaml: Tables 1 and 3, baselines.csv, and the
    generation branch through Table 2, critic.csv and rl_comparison.csv."""
    return _reused("real_sample_workspace") or _built(request, "real_sample_workspace")


@pytest.fixture(scope="session")
def emotion_pipeline_workspace(request) -> Path:
    """The toy dialogues without labels through the emotion pipeline (data.emotions: pipeline), up to the
    labelled dialogues and the processed stage-2 training samples."""
    return _built(request, "emotion_pipeline_workspace")


@pytest.fixture
def copy_workspace(toy_workspace, tmp_path):
    """A private copy of the built toy workspace (with Snakemake's metadata), for tests that change it."""

    def make() -> Path:
        dst = tmp_path / "ws"
        shutil.copytree(toy_workspace, dst, symlinks=True)
        return dst

    return make


TINY_TEXTS = [
    "Hi, I am looking for a good comedy tonight.",
    "Have you seen <movie> ? It is a funny one with a great cast.",
    "I loved it, thanks! Anything like it with more action?",
    "Then try <movie> , an action comedy from the same director.",
    "Sounds great, I will watch it. Goodbye!",
] * 20


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """A tokenizer, a tiny GPT-2 and a tiny RoBERTa saved as local model folders (models.toy), loaded back
    through the same code path as hub models."""
    from ecrflow.models.lm import load_frozen
    from ecrflow.models.toy import build_toy_models

    root = tmp_path_factory.mktemp("tiny_models")
    build_toy_models(TINY_TEXTS, root / "lm", root / "enc", vocab_size=300, hidden=32, n_layer=2, n_head=2,
                     lm_steps=30, seed=0)
    return {"paths": {"plm": str(root / "lm"), "text_encoder": str(root / "enc")},
            "frozen": load_frozen(str(root / "lm"), str(root / "enc"))}


@pytest.fixture
def tiny_kg():
    """A 12-entity graph (entity 11 pads) over 3 relations, both directions and self loops."""
    import torch

    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, 11, (30,), generator=g)
    dst = torch.randint(0, 11, (30,), generator=g)
    rel = torch.randint(0, 2, (30,), generator=g)
    loops = torch.arange(12)
    edge_index = torch.stack([torch.cat([src, dst, loops]), torch.cat([dst, src, loops])])
    edge_type = torch.cat([rel, rel, torch.full((12,), 2)])
    return {"n_entity": 12, "pad_entity": 11, "n_relation": 3}, edge_index, edge_type
