"""Several processes for a rule that asks for more than one GPU, and the pre-submission estimate."""

import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, local_env
from ecrflow.smk import launch_command

TOY = str(REPO / "config" / "toy.yaml")


def test_launch_command_uses_accelerate_per_gpu(monkeypatch):
    monkeypatch.delenv("ECRFLOW_LAUNCH_CPU", raising=False)
    cmd = launch_command(4, "/tmp/x.py")
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert cmd[cmd.index("--num_processes") + 1] == "4" and cmd[-1] == "/tmp/x.py"
    monkeypatch.setenv("ECRFLOW_LAUNCH_CPU", "1")
    assert launch_command(2, "/tmp/x.py")[1:3] == ["-m", "torch.distributed.run"]


@pytest.mark.e2e
def test_two_gpu_rule_trains_in_two_processes(copy_workspace):
    """resources.critic.gpus: 2 starts the critic's script twice (on CPU here, ECRFLOW_LAUNCH_CPU=1): the
    shared Trainer splits each micro-batch over the two processes and only the main one writes."""
    ws = copy_workspace()
    over = {"resources": {"critic": {"cpus": 1, "mem_mb": 4000, "runtime": 30, "gpus": 2}}, "critic": {"epochs": 1}}
    (ws / "gpus.yaml").write_text(yaml.safe_dump(over))
    env = {**local_env(), "ECRFLOW_LAUNCH_CPU": "1"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2",
           "results/toy/tables/critic.csv", "--configfile", TOY, str(ws / "gpus.yaml")]
    subprocess.run(cmd, cwd=ws, env=env, check=True, capture_output=True, text=True)
    log = (ws / "results" / "toy" / "logs" / "critic.log").read_text()
    assert "2 process(es)" in log and "1 process(es)" not in log
    assert log.count("rule critic done") == 1  # one writer
    rows = (ws / "results" / "toy" / "tables" / "critic.csv").read_text().splitlines()
    assert rows[0].startswith("split,head,target") and len(rows) > 10


@pytest.mark.e2e
def test_estimate_prints_projections_and_flags_what_does_not_fit(toy_workspace, tmp_path):
    est = [sys.executable, "-m", "ecrflow.cli", "estimate", "--configfile", TOY, "--base",
           str(REPO / "config" / "config.yaml"), "--rules", "critic", "recommend_train", "--steps", "1"]
    proc = subprocess.run(est, cwd=toy_workspace, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines() if line.split()}
    assert lines["critic"].rstrip().endswith("yes") and lines["recommend_train"].rstrip().endswith("yes")
    assert "results/toy/data/processed/train_rec.parquet" in proc.stdout  # counted from the built data
    # it says what it is doing while it measures (minutes per rule at paper shapes), on stderr
    assert "[1/2] critic: building the model and timing 1 optimiser step(s)" in proc.stderr
    assert "[2/2] recommend_train: " in proc.stderr and "s per micro-batch" in proc.stderr
    # another run's data is not this run's: where the toy run was built, the paper config counts ReDial's
    # sizes (it projected the paper run from the toy's 5,073 samples when all runs shared results/)
    from ecrflow.config import load_config_files
    from ecrflow.estimate import ASSUMED_SAMPLES, _processed

    cwd = os.getcwd()
    try:
        os.chdir(toy_workspace)
        paper = load_config_files([str(REPO / "config" / "config.yaml")])
        toy = load_config_files([TOY], str(REPO / "config" / "config.yaml"))
        assert _processed(paper, "rec", "recommend") == (ASSUMED_SAMPLES["recommend"], "assumed ReDial size")
        assert _processed(toy, "rec", "recommend")[1] == "results/toy/data/processed/train_rec.parquet"
    finally:
        os.chdir(cwd)
    tight = tmp_path / "tight.yaml"
    tight.write_text(yaml.safe_dump({"resources": {"recommend": {"cpus": 2, "mem_mb": 100, "runtime": 1,
                                                                 "gpus": 0}}}))
    proc = subprocess.run([*est[:6], str(tight), *est[6:]], cwd=toy_workspace, capture_output=True, text=True)
    assert proc.returncode == 1
    assert next(x for x in proc.stdout.splitlines() if x.startswith("recommend_train")).rstrip().endswith("NO")
