"""The glue between a Snakemake ``script:`` and the library: logging to the rule's log file, and failure
that is loud (a traceback in the log and a non-zero exit), never a job that reports success after failing."""

from __future__ import annotations

import logging
import sys
from typing import Callable


def run(snakemake, step: Callable[..., object], **kwargs) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if getattr(snakemake, "log", None):
        handlers.append(logging.FileHandler(snakemake.log[0], mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(f"ecrflow.rule.{snakemake.rule}")
    _limit_threads(getattr(snakemake, "threads", None))
    try:
        step(**kwargs)
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    log.info("rule %s done", snakemake.rule)


def _limit_threads(threads) -> None:
    """Keep torch to the job's declared threads: parallel jobs that each spin one OpenMP thread per core on
    a shared machine slow each other down several-fold."""
    if not threads or "torch" not in sys.modules:
        return
    import torch

    torch.set_num_threads(int(threads))
