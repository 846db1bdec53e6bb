"""Best-of-N: the baseline RL with the critic as reward must beat. For each judged test context the
supervised generator samples N continuations of its own prompt (u_r as the first sentence), the critic scores
each, and the best is the reply. It optimises the same reward as RL without changing a weight; its KL to the
supervised policy is at most log N - (N - 1) / N (Beirami et al. 2024), where RL's is measured."""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch

from ..io import write_json, write_jsonl

log = logging.getLogger(__name__)


def kl_bound(n: int) -> float:
    """The analytic upper bound of KL(best-of-n || base) per reply."""
    return math.log(n) - (n - 1) / n


@torch.no_grad()
def sample_n(model, tok, prompt_ids: list[int], *, n: int, max_new_tokens: int, temperature: float,
             device) -> list[list[int]]:
    """n sampled continuations of one prompt (up to, not including, the end-of-text)."""
    ids = torch.tensor([prompt_ids] * n, device=device)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0, top_p=1.0,
                         temperature=temperature, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    res = []
    for row in out[:, len(prompt_ids):].tolist():
        res.append(row[:row.index(tok.eos_token_id)] if tok.eos_token_id in row else row)
    return res


def best_of_n(generator_dir, critic_dir, sample, supervised, *, out, stats_out, n: int, temperature: float,
              max_new_tokens: int, context_max_length: int, reward_weights: dict, seed: int) -> None:
    """The Best-of-N replies of the judged test contexts (the supervised responses' prompts), in the
    response format of generate_responses, with every candidate's critic reward."""
    from ..generate.generator import load_trained
    from ..judge.contexts import read_generated, read_sample
    from . import CriticReward

    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tok, _ = load_trained(generator_dir, merge=True)
    model.to(device).eval()
    reward = CriticReward(critic_dir, reward_weights, device=device)
    sup = read_generated(supervised)
    rows, t0 = [], time.time()
    for c in read_sample(sample):
        base = sup.get((c["dialog_id"], int(c["turn"])))
        if base is None:
            continue
        prompt = tok(base["prompt"], add_special_tokens=False)["input_ids"][-context_max_length:]
        cands = sample_n(model, tok, prompt, n=n, max_new_tokens=max_new_tokens, temperature=temperature,
                         device=device)
        texts = [tok.decode(x, skip_special_tokens=True).strip() for x in cands]
        replies = [f"{base['u_r']} {t}".strip() for t in texts]
        scores = reward.scores([c["history"]] * n, replies)
        best = int(np.argmax(scores))
        rows.append({**{k: base[k] for k in ("dialog_id", "turn", "item", "item_name", "prompt", "u_r", "reference")},
                     "u_e": texts[best], "response": replies[best], "new_tokens": len(cands[best]),
                     "candidate_rewards": [round(float(s), 4) for s in scores]})
    if not rows:
        raise ValueError(f"{sample}: no judged context has a supervised response in {supervised}")
    write_jsonl(out, rows)
    chosen = [max(r["candidate_rewards"]) for r in rows]
    mean_all = [float(np.mean(r["candidate_rewards"])) for r in rows]
    stats = {"contexts": len(rows), "n": n, "temperature": temperature, "kl_bound": round(kl_bound(n), 4),
             "critic_reward_chosen": round(float(np.mean(chosen)), 4),
             "critic_reward_mean_candidate": round(float(np.mean(mean_all)), 4),
             "seconds": round(time.time() - t0, 1)}
    write_json(stats_out, stats)
    log.info("best-of-%d: %s", n, stats)
