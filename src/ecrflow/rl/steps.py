"""The RL rules' steps (called by workflow/scripts), one function per rule of workflow/rules/rl.smk, named
as the rule."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from ..io import write_csv
from . import CriticReward, GenerationInference, RLSettings

if TYPE_CHECKING:
    from ..train import TrainSettings

log = logging.getLogger(__name__)


def rl_train(generator_dir, critic_dir, responses, rec, *, out_dir, log_out, metrics_out, work_dir,
             section: RLSettings | dict, gen: GenerationInference | dict, train_cfg: TrainSettings | dict) -> None:
    """GRPO of one generator kind with the critic as reward: :func:`ecrflow.rl.train_rl`."""
    from ..config import section as typed
    from ..train import TrainSettings
    from . import train_rl

    train_rl(generator_dir, critic_dir, responses, rec, out_dir=out_dir, log_out=log_out, metrics_out=metrics_out,
             work_dir=work_dir, section=typed(RLSettings, section, "rl"),
             gen=typed(GenerationInference, gen, "generation"), train_cfg=typed(TrainSettings, train_cfg, "train"))


def rl_generate(model_dir, predictions, responses, rec, items, entity2id, relation2id, subkg, movie_knowledge, *,
                out, stats_out, gen: dict, section: dict, knowledge_relations: list[str], train_cfg: dict) -> None:
    """The RL policy's test responses: saved in the generator's folder format, it is run exactly as a
    supervised generator (:func:`ecrflow.generate.steps.generate_responses`)."""
    from ..generate.steps import generate_responses

    generate_responses(model_dir, predictions, responses, rec, items, entity2id, relation2id, subkg, movie_knowledge,
                       out=out, stats_out=stats_out, gen=gen, section=section, knowledge_relations=knowledge_relations,
                       train_cfg=train_cfg)


def rl_comparison(sample, supervised, rl, bon, rl_metrics, critic_dir, scores: dict, *, out, supervised_name: str,
                  rl_name: str, bon_name: str, bon_n: int, reward_weights: dict, n_boot: int, seed: int) -> None:
    """``rl_comparison.csv``: the supervised generator (SFT), Best-of-N with the critic and the RL generator
    on the judged test sample, paired over the contexts all three answered. Each judge's metrics (the
    evidence: neither policy optimised the judge), the critic's heads and weighted reward (what both
    optimised), and the signs of reward hacking: length, repetition, Dist-n and the KL to SFT."""
    from ..critic import predict
    from ..generate.metrics import distinct_ratio, tokenize
    from ..io import read_json
    from ..judge.contexts import read_generated, read_sample
    from ..judge.scoring import METRIC_KEYS
    from ..judge.tables import nested, read_scores
    from .best_of_n import kl_bound

    contexts = read_sample(sample)
    files = {"sft": read_generated(supervised), "bon": read_generated(bon), "rl": read_generated(rl)}
    names = {"sft": supervised_name, "bon": bon_name, "rl": rl_name}
    keys = [(c["dialog_id"], int(c["turn"])) for c in contexts
            if all((c["dialog_id"], int(c["turn"])) in f for f in files.values())]
    if not keys:
        raise ValueError(f"{sample}: no judged context has a reply from SFT, Best-of-N and RL")
    hist = {(c["dialog_id"], int(c["turn"])): c["history"] for c in contexts}
    text = {s: [f[k]["response"] for k in keys] for s, f in files.items()}
    compare = lambda measure, values: compare_systems(measure, values, n_boot=n_boot, seed=seed)  # noqa: E731
    rows = []
    for judge, path in scores.items():
        by = nested(read_scores(path))
        both = [k for k in keys if all(names[s] in by.get(k, {}) for s in names)]
        for m in METRIC_KEYS:
            if both:
                rows.append(compare(f"judge:{judge}:{m}", {s: [by[k][names[s]][m] for k in both] for s in names}))
    reward = CriticReward(critic_dir, reward_weights)
    pred = {s: predict(reward.critic, reward.encoder, list(zip([hist[k] for k in keys], t))) for s, t in text.items()}
    for j, m in enumerate(reward.critic.metrics):
        rows.append(compare(f"critic:{m}", {s: p[:, j].tolist() for s, p in pred.items()}))
    rows.append(compare("critic:reward", {s: (p @ reward.weights).tolist() for s, p in pred.items()}))
    toks = {s: [tokenize(t) for t in ts] for s, ts in text.items()}
    rows.append(compare("length_tokens", {s: [len(t) for t in ts] for s, ts in toks.items()}))
    # repetition: the share of a reply's trigrams that repeat one before it (0 for a reply without a repeat)
    rows.append(compare("repeated_trigrams", {s: [1 - distinct_ratio([t], 3) if len(t) >= 3 else 0.0 for t in ts]
                                              for s, ts in toks.items()}))
    for n in (1, 2):
        # Corpus Dist-n has no bootstrap interval (a resample repeats replies, which lowers it); the per-reply
        # ratio (distinct / total n-grams within each reply) is a per-context value with one.
        rows.append({"measure": f"dist_ratio{n}_corpus", "n": len(keys),
                     **{s: round(distinct_ratio(ts, n), 4) for s, ts in toks.items()}})
        rows.append(compare(f"dist_ratio{n}_per_reply", {s: [distinct_ratio([t], n) for t in ts]
                                                         for s, ts in toks.items()}))
    rl_kl = read_json(rl_metrics).get("heldout_kl_per_token")
    rows.append({"measure": "kl_to_sft", "n": len(keys), "sft": 0.0, "bon": round(kl_bound(bon_n), 4),
                 "rl": rl_kl, "note": f"bon: the bound log N - (N-1)/N per reply (N = {bon_n}); rl: per token, "
                                      "measured on held-out valid contexts"})
    write_csv(out, rows)
    log.info("SFT / Best-of-N / RL: %s", json.dumps([r for r in rows if r["measure"] == "critic:reward"]))


def compare_systems(measure: str, values: dict[str, list[float]], *, n_boot: int, seed: int) -> dict:
    """The mean of per-context values of each system (sft, bon, rl) with 95 % bootstrap intervals, and the
    paired differences bon - sft, rl - sft and rl - bon (the same resampled contexts for every system)."""
    n = len(next(iter(values.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    arr = {s: np.asarray(v, dtype=float) for s, v in values.items()}
    boots = {s: a[idx].mean(axis=1) for s, a in arr.items()}
    q = lambda x: np.quantile(x, [0.025, 0.975])  # noqa: E731
    row: dict = {"measure": measure, "n": n}
    for s, a in arr.items():
        lo, hi = q(boots[s])
        row.update({s: round(float(a.mean()), 4), f"{s}_ci_low": round(float(lo), 4),
                    f"{s}_ci_high": round(float(hi), 4)})
    for a, b in (("bon", "sft"), ("rl", "sft"), ("rl", "bon")):
        if a in arr and b in arr:
            lo, hi = q(boots[a] - boots[b])
            row.update({f"{a}_minus_{b}": round(float(arr[a].mean() - arr[b].mean()), 4),
                        f"{a}_minus_{b}_ci_low": round(float(lo), 4), f"{a}_minus_{b}_ci_high": round(float(hi), 4)})
    return row
