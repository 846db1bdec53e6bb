"""The RL rules' steps (called by workflow/scripts), one function per rule of workflow/rules/rl.smk, named
as the rule."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from ..io import write_csv
from . import CriticReward, GenerationInference, RLSettings, paired_bootstrap

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


def rl_comparison(sample, supervised, rl, critic_dir, scores: dict, *, out, supervised_name: str, rl_name: str,
                  reward_weights: dict, n_boot: int, seed: int) -> None:
    """``rl_comparison.csv``: the supervised and the RL generator on the judged test sample: each judge's
    five metrics, the critic's five heads and weighted reward, Dist-1/2 and length, paired over contexts."""
    from ..critic import predict
    from ..generate.metrics import distinct_ratio, tokenize
    from ..judge.contexts import read_generated, read_sample
    from ..judge.scoring import METRIC_KEYS
    from ..judge.tables import read_scores
    from ..judge.tables import nested

    contexts = read_sample(sample)
    sup, rlr = read_generated(supervised), read_generated(rl)
    keys = [(c["dialog_id"], int(c["turn"])) for c in contexts if (c["dialog_id"], int(c["turn"])) in sup
            and (c["dialog_id"], int(c["turn"])) in rlr]
    hist = {(c["dialog_id"], int(c["turn"])): c["history"] for c in contexts}
    a_text = [sup[k]["response"] for k in keys]
    b_text = [rlr[k]["response"] for k in keys]
    rows = []
    for judge, path in scores.items():
        by = nested(read_scores(path))
        both = [k for k in keys if supervised_name in by.get(k, {}) and rl_name in by.get(k, {})]
        for m in METRIC_KEYS:
            if both:
                rows.append(paired_bootstrap(f"judge:{judge}:{m}", [by[k][supervised_name][m] for k in both],
                                             [by[k][rl_name][m] for k in both], stat=np.mean, n_boot=n_boot,
                                             seed=seed))
    reward = CriticReward(critic_dir, reward_weights)
    ctx = [hist[k] for k in keys]
    pa_ = predict(reward.critic, reward.encoder, list(zip(ctx, a_text)))
    pb_ = predict(reward.critic, reward.encoder, list(zip(ctx, b_text)))
    for j, m in enumerate(reward.critic.metrics):
        rows.append(paired_bootstrap(f"critic:{m}", pa_[:, j].tolist(), pb_[:, j].tolist(), stat=np.mean,
                                     n_boot=n_boot, seed=seed))
    rows.append(paired_bootstrap("critic:reward", (pa_ @ reward.weights).tolist(), (pb_ @ reward.weights).tolist(),
                                 stat=np.mean, n_boot=n_boot, seed=seed))
    ta, tb = [tokenize(t) for t in a_text], [tokenize(t) for t in b_text]
    for n in (1, 2):
        # Corpus Dist-n has no bootstrap interval (a resample repeats replies, which lowers it); the per-reply
        # ratio (distinct / total n-grams within each reply) is a per-context value with one.
        rows.append({"measure": f"dist_ratio{n}_corpus", "n": len(keys), "supervised": round(distinct_ratio(ta, n), 4),
                     "rl": round(distinct_ratio(tb, n), 4),
                     "diff": round(distinct_ratio(tb, n) - distinct_ratio(ta, n), 4)})
        per = lambda toks, n=n: [distinct_ratio([t], n) for t in toks]  # noqa: E731
        rows.append(paired_bootstrap(f"dist_ratio{n}_per_reply", per(ta), per(tb), stat=np.mean, n_boot=n_boot,
                                     seed=seed))
    rows.append(paired_bootstrap("length_tokens", [len(t) for t in ta], [len(t) for t in tb], stat=np.mean,
                                 n_boot=n_boot, seed=seed))
    write_csv(out, rows)
    log.info("RL vs supervised: %s", json.dumps([r for r in rows if r["measure"] == "critic:reward"]))
