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
    try:
        step(**kwargs)
    except Exception:
        log.exception("rule %s failed", snakemake.rule)
        raise
    log.info("rule %s done", snakemake.rule)
