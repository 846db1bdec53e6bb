"""The glue between a Snakemake ``script:`` and the library: logging to the rule's log file, and failure
that is loud (a traceback in the log and a non-zero exit), never a job that reports success after failing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Callable


LAUNCHED = "ECRFLOW_LAUNCHED"  # set in the processes a multi-GPU launch starts: they run the step


def run(snakemake, step: Callable[..., object], **kwargs) -> None:
    gpus = int(getattr(getattr(snakemake, "resources", None), "gpu", 0) or 0)
    if gpus > 1 and getattr(step, "multi_process", False) and not os.environ.get(LAUNCHED):
        # A training step on several GPUs: this same script once per GPU (ecrflow.train.multi_process).
        subprocess.run(launch_command(gpus, sys.argv[0]), check=True, env={**os.environ, LAUNCHED: "1"})
        return
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(snakemake, "log", None) and os.environ.get("RANK", "0") == "0":  # one writer of the rule's log
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(f"ecrflow.rule.{snakemake.rule}")
    _limit_threads(getattr(snakemake, "threads", None))
    tune_allocator()
    try:
        step(**kwargs)
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    log.info("rule %s done", snakemake.rule)


def launch_command(processes: int, script: str) -> list[str]:
    """``accelerate launch`` of ``script`` with one process per GPU on this node. ECRFLOW_LAUNCH_CPU=1 starts
    the processes on CPU instead (torch.distributed.run; accelerate then trains with gloo), which is how the
    multi-process path is tested on a machine without GPUs."""
    if os.environ.get("ECRFLOW_LAUNCH_CPU") == "1":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                script]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--dynamo_backend", "no", script]


def _limit_threads(threads) -> None:
    """Keep torch to the job's declared threads: parallel jobs that each spin one OpenMP thread per core on
    a shared machine slow each other down several-fold."""
    if not threads or "torch" not in sys.modules:
        return
    import torch

    torch.set_num_threads(int(threads))


def tune_allocator() -> None:
    """Keep glibc from returning every large block to the OS on free: training allocates and frees
    activation-sized buffers (tens of MB) every step, and with the default mmap threshold each one is a fresh
    mapping whose pages fault in zeroed. Measured on the stage-2 benchmark: about 25 % faster on 2 cores.
    A no-op where glibc's mallopt is missing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        pass
