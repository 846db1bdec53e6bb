# Config validation, paths and input functions shared by every rule file. Other rule files are declarations.
from pathlib import Path

from ecrflow.config import load_schema, validate_config
from ecrflow.constants import SPLITS
from ecrflow.data.validate import check_present, required_files

# Fails before any job runs, naming the offending key.
validate_config(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))

RAW = config["data"]["raw_dir"]
DATA = "results/data"
PROCESSED = f"{DATA}/processed"
KG = f"{DATA}/kg"
TABLES = "results/tables"
LOGS = "results/logs"
BENCH = "results/benchmarks"
REQUIRE_EMOTION = config["data"]["emotions"] == "dataset"

if not config["toy"]["enabled"]:
    # A real run: a missing release file is reported now, with where to get it, not hours into a job.
    check_present(RAW, config["data"]["dialog_pattern"], config["data"]["reviews"])


def raw_file(name):
    return f"{RAW}/{name}"


def dialog_file(split):
    return raw_file(config["data"]["dialog_pattern"].format(split=split))


def raw_files():
    return [raw_file(f) for f in required_files(config["data"]["dialog_pattern"], config["data"]["reviews"])]


def stage_resources(stage):
    """Job resources of a stage from config (resources.<stage>, else resources.default)."""
    r = config["resources"].get(stage, config["resources"]["default"])
    res = {"mem_mb": r["mem_mb"], "runtime": r["runtime"], "cpus_per_task": r["cpus"]}
    if r["gpus"] > 0:
        res["gpu"] = r["gpus"]
        res["slurm_partition"] = config["cluster"]["gpu_partition"]
    elif config["cluster"]["cpu_partition"]:
        res["slurm_partition"] = config["cluster"]["cpu_partition"]
    return res


def stage_threads(stage):
    return config["resources"].get(stage, config["resources"]["default"])["cpus"]


def all_targets():
    """Everything the default target builds: the tables of every stage wired in so far."""
    return [f"{TABLES}/dataset_stats.csv", f"{TABLES}/baselines.csv", f"{TABLES}/table1.csv",
            f"{TABLES}/table3.csv", "results/conversation/test_responses.parquet"]
