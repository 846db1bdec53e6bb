"""The judge rules' steps (called by workflow/scripts): the judged sample, the LLM baselines' replies, one
judge's scores, Table 2."""

from __future__ import annotations

import json
import logging

import pyarrow as pa

from ..config import section
from ..io import write_csv, write_json, write_jsonl, write_parquet
from .contexts import build_sample, read_sample, system_replies
from .scoring import JudgeOptions
from .tables import read_scores

log = logging.getLogger(__name__)


def judge_sample(rec, generated: dict, *, out, n: int, seed: int, max_history: int) -> None:
    rows = build_sample(rec, generated, n=n, seed=seed, max_history=max_history)
    if not rows:
        raise ValueError(f"no turn of {rec} has a context and a response from every generator")
    write_jsonl(out, rows)
    log.info("judge sample: %d contexts", len(rows))


def llm_baseline(sample, *, out, summary_out, cache_dir, llm: dict, batch_size: int, max_tokens: int,
                 max_attempts: int = 3, name: str = "") -> None:
    """A zero-shot LLM's reply to every sampled context. A request that fails after the backend's retries
    fails the job with the counts (ecrflow.llm.stage): no failed generation ever becomes a judged reply."""
    from ..llm import backend_from_config
    from ..llm.cache import RequestCache
    from ..llm.stage import ask_all
    from .baselines import baseline_request, baseline_rows, parse_reply

    contexts = read_sample(sample)
    backend = backend_from_config(llm, batch_size)
    with RequestCache(cache_dir) as cache:
        outcomes = ask_all(backend, cache, len(contexts),
                           lambda i, k: baseline_request(contexts[i], max_tokens=max_tokens, attempt=k),
                           lambda i, k, text: parse_reply(text), max_attempts=max_attempts, batch_size=batch_size,
                           stage=f"llm_baseline {name}".strip())
    rows, summary = baseline_rows(contexts, outcomes)
    summary["llm"] = backend.model_id
    write_jsonl(out, rows)
    write_json(summary_out, summary)
    log.info("baseline replies: %s", json.dumps(summary))


def judge(sample, files: dict, *, scores_out, summary_out, cache_dir, name: str,
          options: JudgeOptions | dict) -> None:
    """One judge's scores of every system on the sample (long Parquet rows) and its summary; a request that
    fails after the backend's retries fails the job (ecrflow.llm.stage) and nothing is written."""
    from ..llm import backend_from_config
    from ..llm.cache import RequestCache
    from .scoring import SCORINGS, Prompt, fluency_check, judge_contexts, judge_pointwise

    opts = section(JudgeOptions, options, f"judge.judges.{name}")
    if opts.scoring not in SCORINGS:
        raise ValueError(f"judge {name}: scoring must be one of {', '.join(SCORINGS)}, not {opts.scoring!r}")
    contexts = read_sample(sample)
    replies = system_replies(contexts, files)
    backend = backend_from_config(opts.llm, opts.batch_size)
    with RequestCache(cache_dir) as cache:
        if opts.scoring == "expected":
            rows, summary = judge_pointwise(contexts, replies, backend, cache, judge=name,
                                            max_attempts=opts.max_attempts)
            summary["fluency"] = fluency_check(contexts, replies, backend, seed=opts.seed)
        else:
            prompt = Prompt.from_file(opts.prompt_file) if opts.prompt_file else Prompt()
            rows, summary = judge_contexts(contexts, replies, backend, cache, judge=name, seed=opts.seed,
                                           max_attempts=opts.max_attempts, batch_size=opts.batch_size,
                                           prompt=prompt, constrained=opts.constrained)
    if not rows:
        raise RuntimeError(f"judge {name}: no answer could be parsed ({json.dumps(summary)[:2000]})")
    # expected and digit_mass: the expectation over the judge's digit distribution and the digits' share of
    # it (scoring: expected); null for greedy listwise answers
    table = pa.Table.from_pylist(rows, schema=pa.schema([
        ("dialog_id", pa.string()), ("turn", pa.int64()), ("system", pa.string()), ("metric", pa.string()),
        ("score", pa.int64()), ("expected", pa.float64()), ("digit_mass", pa.float64()), ("attempt", pa.int64()),
        ("pseudonym", pa.string())]))
    write_parquet(scores_out, table)
    write_json(summary_out, summary)
    log.info("judge %s: %d of %d contexts scored; %d left unscored", name, summary["judged"], summary["contexts"],
             len(summary["unscored_contexts"]))


def table2(scores: dict, *, out, paper_rows: dict, seed: int, summaries: dict | None = None) -> None:
    """Table 2: every judge's mean scores per system and metric, with the paper's rows, each judge's
    calibration row (with its model's own fluency check, from the judge summaries) and the judges'
    agreement."""
    from ..io import read_json
    from .tables import PAPER_ROWS, table2_rows

    judges = {name: read_scores(path) for name, path in scores.items()}
    fluency = {name: read_json(path).get("fluency") for name, path in (summaries or {}).items()}
    write_csv(out, table2_rows(judges, {**PAPER_ROWS, **paper_rows}, seed=seed, fluency=fluency))
