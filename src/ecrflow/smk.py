"""The glue between a Snakemake ``script:`` and the library: logging to the rule's log file, and failure
that is loud (a traceback in the log and a non-zero exit), never a job that reports success after failing.

A failing step shows the user one short block on stderr (what failed, file, line, field, what was expected,
the hint, where the log is); the traceback goes to the rule's log only, so that a data error is not buried
in three copies of a traceback (the logger's, Python's, and a launcher's)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys
from typing import Callable


LAUNCHED = "ECRFLOW_LAUNCHED"  # set in the processes a multi-GPU launch starts: they run the step


def run(snakemake, step: Callable[..., object], **kwargs) -> None:
    gpus = int(getattr(getattr(snakemake, "resources", None), "gpu", 0) or 0)
    log_path = str(snakemake.log[0]) if getattr(snakemake, "log", None) else None
    if gpus > 1 and getattr(step, "multi_process", False) and not os.environ.get(LAUNCHED):
        # A training step on several GPUs: this same script once per GPU (ecrflow.train.multi_process).
        # Each process reports its own failure; the launcher's traceback would only repeat it.
        done = subprocess.run(launch_command(gpus, sys.argv[0]), env={**os.environ, LAUNCHED: "1"})
        if done.returncode:
            sys.stderr.write(f"ecrflow: rule {snakemake.rule} failed: the {gpus}-process launch exited with "
                             f"status {done.returncode} (see above; details in {log_path or 'stderr'})\n")
            raise SystemExit(1)
        return
    quiet_libraries(step)
    rank = os.environ.get("RANK", "0")
    stream = logging.StreamHandler(sys.stderr)
    handlers: list[logging.Handler] = [stream]
    if log_path and rank == "0":  # one writer of the rule's log
        handlers.append(logging.FileHandler(log_path, mode="w"))
        # The job's story (settings, progress lines, metrics) goes to its log; the terminal, or a SLURM job's
        # output, gets warnings and the failure block, so that parallel jobs do not interleave their logs.
        stream.setLevel(logging.WARNING)
    else:
        log_path = None
    # transformers prints its warnings to stderr with its own handler; ours would print each a second time
    stream.addFilter(lambda record: not record.name.startswith("transformers"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(f"ecrflow.rule.{snakemake.rule}")
    _limit_threads(getattr(snakemake, "threads", None))
    tune_allocator()
    try:
        step(**kwargs)
    except Exception as e:
        from .errors import ConfigError, InputError

        # The traceback to the log only. Without a log (no log declared, or a launched process other than
        # rank 0) it stays on stderr, unless the error is a known input or config problem the block says whole.
        if log_path or isinstance(e, (InputError, ConfigError)):
            stream.setLevel(logging.CRITICAL + 1)
        log.exception("rule %s failed", snakemake.rule)
        known = isinstance(e, (InputError, ConfigError))
        if rank == "0" or not known:  # every process meets the same bad input: rank 0 reports it once
            rule = snakemake.rule if rank == "0" else f"{snakemake.rule} (process {rank})"
            sys.stderr.write(failure_block(e, rule, log_path))
            sys.stderr.flush()
        raise SystemExit(1) from None
    log.info("rule %s done", snakemake.rule)


def quiet_libraries(step) -> None:
    """No library progress bars in a job (weights loading, dataset maps, downloads: each a redrawn line in a
    log; the training loop reports its own progress, ecrflow.progress), and the Hugging Face libraries offline
    in every job but the download rules (``step.needs_network``): the hub models were fetched before, at a
    pinned revision, by the hub_model rule."""
    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")
    if not getattr(step, "needs_network", False):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


_DISK_HINTS = {
    errno.EACCES: "the folder is not writable by you: fix its permissions, or start a run elsewhere "
                  "(--config run=NAME writes results/NAME/)",
    errno.EROFS: "the file system is read-only: start the run in a writable folder",
    errno.ENOSPC: "the disk is full: free space on this file system (results/<run>/work/ holds checkpoints; "
                  "finished runs can drop it)",
    errno.EDQUOT: "your disk quota is used up: free space, or move the results folder to a file system with room",
}


def failure_block(error: BaseException, rule: str, log_path: str | None) -> str:
    """The user's view of a failed rule: one short block, each field on its line (see InputError)."""
    from .errors import ConfigError, InputError

    rows: list[tuple[str, str]] = []
    if isinstance(error, InputError):
        head = error.headline  # as str(error) words it (what users and tests grep for), the hint apart
        if error.field:
            rows.append(("field", error.field))
        if error.hint:
            rows.append(("hint", error.hint))
    elif isinstance(error, ConfigError):
        head = str(error)
    elif isinstance(error, OSError) and error.errno in _DISK_HINTS:  # the file system said no: where, and why
        head = f"{type(error).__name__}: {error.strerror}"
        if error.filename:
            rows.append(("path", str(error.filename)))
        rows.append(("hint", _DISK_HINTS[error.errno]))
    else:  # not a known input or config problem: the exception's type says what kind of failure
        head = f"{type(error).__name__}: {error}"
    if log_path:
        rows.append(("log", f"{log_path} (with the traceback)"))
    lines = [f"ecrflow: rule {rule} failed", "  " + head.strip().replace("\n", "\n  ")]
    width = max((len(k) for k, _ in rows), default=0) + 2
    for key, value in rows:
        text = str(value).strip().replace("\n", "\n" + " " * (width + 2))
        lines.append(f"  {key + ':':<{width}}{text}")
    return "\n".join(lines) + "\n"


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


def _other_snakemake_here(cwd: str) -> bool:
    """Whether another Snakemake process (not a job's script) runs in ``cwd`` on this host (Linux /proc)."""
    if not os.path.isdir("/proc"):
        return True  # nothing can be told: assume one runs, and say nothing
    me = os.getpid()
    for proc in os.listdir("/proc"):
        if not proc.isdigit() or int(proc) == me:
            continue
        try:
            with open(f"/proc/{proc}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            here = os.readlink(f"/proc/{proc}/cwd") == cwd
        except OSError:  # gone, or another user's
            continue
        if here and "snakemake" in cmd and ".snakemake/scripts" not in cmd:
            return True
    return False


def stale_lock_hint(argv: list[str], workdir: str = ".") -> str | None:
    """After a Snakemake killed in this folder (SIGKILL, a lost node, a power cut) its lock stays and the
    next run stops at Snakemake's LockException. When no Snakemake runs here on this host, the exact commands
    that recover: unlock, then the same command (the profiles set rerun-incomplete, and training resumes
    from results/<run>/work/)."""
    import shlex

    locks = os.path.join(workdir, ".snakemake", "locks")
    if not (os.path.isdir(locks) and os.listdir(locks)):
        return None
    if _other_snakemake_here(os.path.realpath(workdir)):
        return None
    args = shlex.join(a for a in argv[1:] if a not in ("--unlock", "-n", "--dry-run", "--dryrun"))
    return (f"a Snakemake run in {os.path.realpath(workdir)} was killed and left its lock (no Snakemake runs here "
            f"now). Recover with:\n  snakemake --unlock {args}\n  snakemake {args}\n(a job killed mid-way is "
            f"rerun, training resumes from its checkpoint; on a cluster, make sure no Snakemake of this folder "
            f"runs on another node first)")
