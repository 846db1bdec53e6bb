"""The workflow on a real SLURM cluster (started here by cluster/local_slurm.sh from Debian packages): rules
land in the right partitions with the GPUs they ask for, and a training job killed by its time limit
resumes from its checkpoint when the target is run again.

Needs root and the packages slurmctld, slurmd, slurm-client and munge (`cluster/local_slurm.sh install`);
skipped otherwise. CI installs them (.ci/run)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, snakemake

pytestmark = pytest.mark.slow
TOY = str(REPO / "config" / "toy.yaml")
CLUSTER = REPO / "cluster" / "local_slurm.sh"
# The GPU stages of the Table 1 branch (without u_r in the prompt, it needs no conversation module).
GPU_RULES = {"pretrain", "recommend_train", "recommend_predict"}
# The profile users run, plus what a cluster without accounting (slurmdbd) needs, and quick polling.
SLURM = ["--profile", str(REPO / "profiles" / "slurm"), "--slurm-status-command", "squeue",
         "--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "3"]


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (it writes /etc/slurm and starts slurmctld/slurmd)"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} not installed; as root: cluster/local_slurm.sh install"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = _why_not()
    if why:
        pytest.skip(f"no local SLURM cluster: {why}")
    subprocess.run([str(CLUSTER), "start"], check=True)
    yield
    subprocess.run([str(CLUSTER), "stop"], check=False)


def slurm_jobs(workdir) -> list[dict]:
    """Every job SLURM still knows (MinJobAge keeps finished ones) that ran in ``workdir``, as dicts of
    scontrol's fields."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


def _rule(job: dict) -> str:
    return re.sub(r"^rule_", "", job["Comment"]).split("_wildcards")[0]


def _over(ws, extra: dict) -> str:
    gpu = {"cpus": 2, "mem_mb": 3000, "runtime": 30, "gpus": 1}
    over = {"cluster": {"cpu_partition": "cpu", "gpu_partition": "gpu"},
            "resources": {s: gpu for s in ("pretrain", "recommend", "conversation", "predict")}}
    for k, v in extra.items():
        over[k] = {**over.get(k, {}), **v}
    (ws / "slurm.yaml").write_text(yaml.safe_dump(over))
    return str(ws / "slurm.yaml")


def test_recommendation_branch_runs_in_its_partitions(cluster, toy_workspace, tmp_path):
    """Table 1 of the toy run through profiles/slurm: GPU stages in partition gpu with one GPU each, the
    rest in cpu without one; the table equals the one built without SLURM."""
    over = _over(tmp_path, {})
    snakemake(tmp_path, "results/tables/table1.csv", *SLURM, "--configfile", TOY, over)
    jobs = slurm_jobs(tmp_path)
    rules = {_rule(j) for j in jobs}
    assert GPU_RULES <= rules and {"toy_data", "validate_input", "process_split", "rec_table"} <= rules
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        if _rule(job) in GPU_RULES:
            assert job["Partition"] == "gpu" and "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    assert (tmp_path / "results/tables/table1.csv").read_bytes() == \
        (toy_workspace / "results/tables/table1.csv").read_bytes()


def test_time_limit_kill_then_resume(cluster, copy_workspace):
    """Stage 2 with a one-minute time limit and more epochs than fit: SLURM ends the job (TIMEOUT), the
    output is absent, the checkpoint stays; the same target with a longer limit resumes from it."""
    ws = copy_workspace()
    target = "results/recommend/unicrs/model.safetensors"
    slow = {"train": {"checkpoint_every": 20}, "recommend": {"epochs": 24}}
    short = _over(ws, {**slow, "resources": {"recommend": {"cpus": 2, "mem_mb": 3000, "runtime": 1, "gpus": 1}}})
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), target, *SLURM, "--configfile", TOY,
           short]
    first = subprocess.run(cmd, cwd=ws, capture_output=True, text=True)
    assert first.returncode != 0, first.stdout[-3000:]
    killed = [j for j in slurm_jobs(ws) if _rule(j) == "recommend_train"]
    assert killed and killed[-1]["JobState"] == "TIMEOUT", killed
    assert not (ws / target).exists()
    state = ws / "results/work/recommend/unicrs/checkpoint/trainer_state.json"
    killed_at = yaml.safe_load(state.read_text())["step"]
    assert killed_at > 0
    long = _over(ws, {**slow, "resources": {"recommend": {"cpus": 2, "mem_mb": 3000, "runtime": 30, "gpus": 1}}})
    snakemake(ws, target, *SLURM, "--configfile", TOY, long)
    log = (ws / "results/logs/recommend_train/unicrs.log").read_text()
    assert f"resumed from step {killed_at}" in log
    assert (ws / target).exists()
