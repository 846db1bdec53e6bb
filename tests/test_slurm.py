"""The workflow on a real SLURM cluster (started here by cluster/local_slurm.sh from Debian packages): rules
land in the right partitions with the GPUs they ask for, and a training job ended by its time limit
keeps its checkpoint.

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

pytestmark = pytest.mark.slurm
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
    # One CPU as in toy.yaml: torch's thread count is part of what makes the table byte-identical.
    gpu = {"cpus": 1, "mem_mb": 3000, "runtime": 30, "gpus": 1}
    over = {"cluster": {"cpu_partition": "cpu", "gpu_partition": "gpu"},
            "resources": {s: gpu for s in ("pretrain", "recommend", "conversation", "predict")}}
    for k, v in extra.items():
        over[k] = {**over.get(k, {}), **v}
    (ws / "slurm.yaml").write_text(yaml.safe_dump(over))
    return str(ws / "slurm.yaml")


@pytest.fixture(scope="module")
def time_limited_run(cluster, toy_workspace, tmp_path_factory):
    """Stage 2 of UniCRS on a copy of the built workspace with a one-minute time limit and more epochs than
    fit in it, started at once in the background: its SLURM waiting overlaps the branch test's jobs. It asks
    for no GPU (partition cpu), so the two runs do not queue for the one GPU of the local cluster."""
    ws = tmp_path_factory.mktemp("slurm_timeout") / "ws"
    shutil.copytree(toy_workspace, ws, symlinks=True)
    target = "results/toy/recommend/unicrs/model.safetensors"
    slow = {"train": {"checkpoint_every": 10}, "recommend": {"epochs": 16}}  # 1,536 steps: 2-3 min
    short = _over(ws, {**slow, "resources": {"recommend": {"cpus": 1, "mem_mb": 3000, "runtime": 1, "gpus": 0}}})
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), target, *SLURM, "--configfile", TOY,
           short]
    log = ws.parent / "snakemake.log"  # a file, not a pipe: nobody reads it until the run ends
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ws, stdout=out, stderr=subprocess.STDOUT)
    yield ws, target, proc, log
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_recommendation_branch_runs_in_its_partitions(cluster, toy_workspace, copy_workspace, time_limited_run):
    """Table 1 of the toy run through profiles/slurm, its UniCRS row rebuilt on a copy of the built
    workspace: stage 1, stage 2 and its predictions (GPU jobs, in partition gpu with one GPU each) and the
    table (a local rule: it runs beside Snakemake, not as a SLURM job); the table equals the one built
    without SLURM. (time_limited_run is asked for here only to start it first.)"""
    ws = copy_workspace()
    over = _over(ws, {})
    snakemake(ws, "results/toy/tables/table1.csv", "-R", "results/toy/pretrain/unicrs/model.safetensors", *SLURM,
              "--configfile", TOY, over, slurm=True)
    jobs = slurm_jobs(ws)
    rules = {_rule(j) for j in jobs}
    assert rules == GPU_RULES and len(jobs) == 3  # rec_table is a local rule: no queueing for a second's work
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        if _rule(job) in GPU_RULES:
            assert job["Partition"] == "gpu" and "gpu:1" in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", ""), job
    assert (ws / "results/toy/tables/table1.csv").read_bytes() == \
        (toy_workspace / "results/toy/tables/table1.csv").read_bytes()


def test_time_limit_is_retried_longer_and_resumes_from_the_checkpoint(time_limited_run):
    """Stage 2 with a one-minute time limit and more epochs than fit: SLURM ends the job (TIMEOUT) with its
    checkpoint kept; the profile resubmits the training rule (preemptible-retries) with twice the time, and
    that attempt resumes from the checkpoint and finishes."""
    ws, target, proc, log = time_limited_run
    assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    runs = [j for j in slurm_jobs(ws) if _rule(j) == "recommend_train"]
    runs.sort(key=lambda j: int(j["JobId"]))
    assert runs[0]["JobState"] == "TIMEOUT" and runs[-1]["JobState"] == "COMPLETED", runs
    limits = [j["TimeLimit"] for j in runs]
    assert limits[:2] == ["00:01:00", "00:02:00"], limits  # runtime x attempt
    assert (ws / target).exists()
    rule_log = (ws / "results" / "toy" / "logs" / "recommend_train" / "unicrs.log").read_text()
    assert "resumed from step" in rule_log  # the last attempt's log: it went on from the checkpoint


@pytest.mark.dag
def test_profile_retries_exactly_the_training_rules_with_growing_runtime_and_the_account(tmp_path):
    """profiles/slurm names the rules that resume from a checkpoint (and only those) for resubmission; their
    runtime grows with the attempt; cluster.account reaches every job as the plugin's slurm_account."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "profile.yaml").read_text())
    training = {"pretrain", "conversation_train", "recommend_train", "generator_train_dialogpt",
                "generator_train_llama", "emotion_classifier", "critic", "rl_train"}
    assert set(profile["preemptible-rules"]) == training and profile["preemptible-retries"] >= 1
    (tmp_path / "acct.yaml").write_text(yaml.safe_dump({"cluster": {"account": "my_group"}}))
    proc = snakemake(tmp_path, "-n", "--nolock", "--configfile", TOY, str(tmp_path / "acct.yaml"))
    rules = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout, flags=re.M))
    assert training - {"emotion_classifier"} <= rules  # the toy DAG has every training rule but the classifier
    resources = [line for line in proc.stdout.splitlines() if line.strip().startswith("resources:")
                 and "runtime=" in line]  # every job whose resources come from config
    assert len(resources) > 50 and all("slurm_account=my_group" in line for line in resources)
    pretrain = proc.stdout.split("rule pretrain:", 1)[1].split("resources:", 1)[1].splitlines()[0]
    assert "runtime=30," in pretrain  # toy.yaml's 30 minutes on the first attempt (x2, x3 on the retries)
