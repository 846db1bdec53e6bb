"""RL fine-tuning of the emotion-aligned generator with the critic as reward (TRL's GRPO), a KL penalty to the
supervised generator, and the checks that it learned: the critic reward on held-out contexts before and
after, and the KL to the supervised model there.

The policy starts from the supervised generator (a LoRA generator is merged first): GRPO samples
``num_generations`` continuations of each prompt (the generator's knowledge prompt, u_r as its first
sentence), the critic scores context + u_r + continuation, and the advantage is the reward relative to the
prompt's group. TRL rebuilds its frozen reference model from the model's directory, so the policy is handed
over as a saved folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ..io import write_folder, write_json, write_jsonl
from ..train import TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RLSettings:
    """The ``rl`` section (GRPO of one generator kind with the critic as reward)."""

    IGNORED = ("bootstrap", "best_of_n")  # rl_comparison's resamples; the Best-of-N baseline's N

    kind: str | None  # the generator kind tuned; None: no RL stage
    reward_weights: dict  # critic head -> weight
    beta: float  # KL penalty coefficient
    max_kl: float | None  # stop when the logged KL per token exceeds it
    max_steps: int
    lr: float
    prompts_per_step: int
    num_generations: int  # completions per prompt (GRPO's group)
    grad_accum: int
    max_completion_length: int
    temperature: float
    warmup_steps: int
    save_steps: int  # checkpoints for resuming after a time limit
    scale_rewards: str  # group | batch | none
    max_history: int  # dialogue messages the critic sees
    heldout_fraction: float  # valid dialogues kept out of RL for the before/after check
    heldout_contexts: int
    eval_batch_size: int
    seed: int


@dataclass(frozen=True)
class GenerationInference:
    """The ``generation`` keys that shape the test prompts and decoding."""

    n_entities: int  # pn_e
    n_triples: int  # pn_t
    no_repeat_ngram_size: int
    seed: int

LOG_KEYS = {"reward": "reward", "reward_std": "reward_std", "kl": "kl", "loss": "loss",
            "completions/mean_length": "completion_length", "entropy": "entropy", "learning_rate": "lr"}


def rl_contexts(responses, rec, *, max_history: int) -> list[dict]:
    """RL prompts from a split's generator responses (prompt, u_r) with the dialogue history the critic
    needs, keyed by (dialog_id, turn)."""
    from ..judge.contexts import history_text, read_generated

    gen = read_generated(responses)
    hist = {(r["dialog_id"], int(r["turn"])): history_text(r["context"], r["context_roles"], max_history)
            for r in pq.read_table(rec, columns=["dialog_id", "turn", "context", "context_roles"]).to_pylist()}
    return [{"dialog_id": k[0], "turn": k[1], "prompt": g["prompt"], "u_r": g["u_r"], "context": hist.get(k, "")}
            for k, g in gen.items()]


def split_heldout(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    dialogs = sorted({r["dialog_id"] for r in rows})
    n = max(1, round(fraction * len(dialogs))) if len(dialogs) > 1 else 0
    held = {dialogs[i] for i in np.random.default_rng(seed).permutation(len(dialogs))[:n]}
    return [r for r in rows if r["dialog_id"] not in held], [r for r in rows if r["dialog_id"] in held]


class CriticReward:
    """The reward function GRPO calls: the critic's weighted score (0-9) of context + u_r + completion."""

    __name__ = "critic"  # TRL names the logged reward after the function

    def __init__(self, critic_dir, weights: dict, device=None):
        from ..critic import load_critic, reward_weights

        self.critic, self.encoder, meta = load_critic(critic_dir, device=device)
        self.weights = reward_weights(weights, meta["metrics"])
        self.device = device

    def scores(self, contexts: list[str], replies: list[str]) -> np.ndarray:
        from ..critic import predict

        return predict(self.critic, self.encoder, list(zip(contexts, replies)), device=self.device) @ self.weights

    def __call__(self, prompts, completions, context, u_r, **_) -> list[float]:
        replies = [f"{u} {c.strip()}".strip() for u, c in zip(u_r, completions)]
        return [float(x) for x in self.scores(list(context), replies)]


def _truncated_prompt(tok, text: str, max_length: int) -> str:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= max_length else tok.decode(ids[-max_length:])


@torch.no_grad()
def completion_logprobs(model, tok, prompt_ids: list[list[int]], completion_ids: list[list[int]], device) -> list[np.ndarray]:
    """Per-token log-probabilities of each completion given its prompt (one forward per pair)."""
    out = []
    for p, c in zip(prompt_ids, completion_ids):
        if not c:
            out.append(np.zeros(0))
            continue
        ids = torch.tensor([p + c], device=device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits  # one unpadded row
        logp = torch.log_softmax(logits[0, len(p) - 1:-1].float(), -1)
        out.append(logp.gather(1, torch.tensor(c, device=device)[:, None])[:, 0].cpu().numpy())
    return out


@torch.no_grad()
def sample_completions(model, tok, prompt_ids: list[list[int]], *, max_new_tokens: int, seed: int, device) -> list[list[int]]:
    torch.manual_seed(seed)
    out = []
    for p in prompt_ids:
        gen = model.generate(input_ids=torch.tensor([p], device=device), attention_mask=torch.ones(1, len(p),
                             dtype=torch.long, device=device), do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                             max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        new = gen[0, len(p):].tolist()
        out.append(new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new)
    return out


def kl_per_token(policy, reference, tok, prompt_ids, *, max_new_tokens: int, seed: int, device) -> float:
    """Monte-Carlo KL(policy || reference) per generated token: completions sampled from the policy,
    sum of log pi - log pi_ref over all their tokens / the number of tokens."""
    comps = sample_completions(policy, tok, prompt_ids, max_new_tokens=max_new_tokens, seed=seed, device=device)
    lp = completion_logprobs(policy, tok, prompt_ids, comps, device)
    lr = completion_logprobs(reference, tok, prompt_ids, comps, device)
    n = sum(len(x) for x in lp)
    return float(sum((a - b).sum() for a, b in zip(lp, lr)) / max(n, 1))


def evaluate_policy(model, tok, rows: list[dict], reward: CriticReward, *, context_max_length: int,
                    max_new_tokens: int, batch_size: int, no_repeat_ngram_size: int, device) -> dict:
    """Greedy continuations of held-out prompts (as the test responses are made) and their critic reward."""
    from ..generate.generator import generate

    prompts = [tok(r["prompt"], add_special_tokens=False)["input_ids"][-context_max_length:] for r in rows]
    new = generate(model, tok, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens,
                   no_repeat_ngram_size=no_repeat_ngram_size, device=device)
    replies = [f"{r['u_r']} {tok.decode(x, skip_special_tokens=True).strip()}".strip() for r, x in zip(rows, new)]
    scores = reward.scores([r["context"] for r in rows], replies)
    return {"critic_reward": float(scores.mean()), "critic_reward_std": float(scores.std()),
            "mean_new_tokens": float(np.mean([len(x) for x in new])), "contexts": len(rows)}


def _quiet_trl_internals() -> None:
    """TRL 1.16 (the newest) calls transformers' renamed gradient-checkpointing methods, and its fused
    forward in GRPO (trl.trainer.utils._fused_forward) passes no attention mask; each call warns. The calls
    are TRL's, not this module's (its own forward and generate calls pass masks), so those messages are
    dropped here, and only those."""
    import warnings

    warnings.filterwarnings("ignore", message=r"`(is_)?gradient_checkpointing\w*` is deprecated", category=FutureWarning)

    class _NoMaskNote(logging.Filter):
        def filter(self, record):
            return "strongly recommend passing in an `attention_mask`" not in record.getMessage()

    logging.getLogger("transformers.modeling_utils").addFilter(_NoMaskNote())


def _log_callback(records: list[dict], max_kl: float | None, stop: dict, total_steps: int):
    from transformers import TrainerCallback

    from ..progress import Progress

    progress = Progress(total_steps, desc="rl", logger=log)

    class LogAndStop(TrainerCallback):
        """Keeps the per-step record, reports progress (a bar on a terminal, a line per interval in the log,
        in place of the Trainer's printed dict per step) and stops at max_kl."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "reward" not in logs:
                return
            rec = {"step": state.global_step, **{v: logs[k] for k, v in LOG_KEYS.items() if k in logs}}
            records.append(rec)
            progress.update(state.global_step - progress.n, reward=float(rec["reward"]),
                            **({"kl": float(rec["kl"])} if "kl" in rec else {}))
            if max_kl is not None and rec.get("kl", 0.0) > max_kl:
                stop["reason"] = f"kl {rec['kl']:.4f} > max_kl {max_kl} at step {state.global_step}"
                control.should_training_stop = True

        def on_train_end(self, args, state, control, **kwargs):
            progress.close()

    return LogAndStop()


def train_rl(generator_dir, critic_dir, responses, rec, *, out_dir, log_out, metrics_out, work_dir,
             section: RLSettings, gen: GenerationInference, train_cfg: TrainSettings) -> None:
    """GRPO from the supervised generator, per-step log (reward mean/std, KL, length), the policy saved in
    the generator's folder format (so generate_responses reads it), and held-out checks."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from ..generate.generator import META, load_trained
    from ..train import claim_work_dir, fingerprint, remove_work_dir, seed_everything

    seed = section.seed
    seed_everything(seed)
    rows = rl_contexts(responses, rec, max_history=section.max_history)
    train_rows, held = split_heldout(rows, section.heldout_fraction, seed)
    held = held[:section.heldout_contexts]
    if not train_rows:
        raise ValueError(f"{responses}: no RL training prompts")
    use_gpu = torch.cuda.is_available()
    device = torch.device("cuda" if use_gpu else "cpu")
    fp = fingerprint({"section": asdict(section), "gen": asdict(gen)}, [generator_dir, critic_dir, responses, rec])
    work = claim_work_dir(work_dir, fp)  # a checkpoint of other settings or inputs must not be resumed

    # The supervised policy as a plain folder (LoRA merged): TRL loads policy and reference from it.
    sft, tok, meta = load_trained(generator_dir, merge=True)
    init = work / "init"
    if not (init / "config.json").exists():
        write_folder(init, lambda p: (sft.save_pretrained(p), tok.save_pretrained(p)))
    sft.to(device).eval()
    reward = CriticReward(critic_dir, section.reward_weights, device=device)
    ctx_len = meta["context_max_length"]
    eval_kw = dict(context_max_length=ctx_len, max_new_tokens=section.max_completion_length,
                   batch_size=section.eval_batch_size, no_repeat_ngram_size=gen.no_repeat_ngram_size, device=device)
    before = evaluate_policy(sft, tok, held, reward, **eval_kw) if held else None

    data = Dataset.from_list([{"prompt": _truncated_prompt(tok, r["prompt"], ctx_len), "context": r["context"],
                               "u_r": r["u_r"]} for r in train_rows])
    bf16 = use_gpu and torch.cuda.is_bf16_supported() and train_cfg.precision in ("auto", "bf16")
    _quiet_trl_internals()
    cfg = GRPOConfig(output_dir=str(work / "grpo"), max_steps=section.max_steps, learning_rate=section.lr,
                     per_device_train_batch_size=section.prompts_per_step * section.num_generations,
                     gradient_accumulation_steps=section.grad_accum, num_generations=section.num_generations,
                     max_completion_length=section.max_completion_length, beta=section.beta,
                     temperature=section.temperature, warmup_steps=section.warmup_steps, logging_steps=1,
                     save_strategy="steps", save_steps=section.save_steps, save_total_limit=1, seed=seed,
                     data_seed=seed, use_cpu=not use_gpu, bf16=bf16, report_to="none", disable_dropout=True,
                     disable_tqdm=True, scale_rewards=section.scale_rewards)
    records: list[dict] = []
    stop: dict = {}
    trainer = GRPOTrainer(model=str(init), reward_funcs=reward, args=cfg, train_dataset=data, processing_class=tok,
                          callbacks=[_log_callback(records, section.max_kl, stop, section.max_steps)])
    trainer.remove_callback(PrinterCallback)  # it prints every step's log dict to stdout
    ckpts = sorted((work / "grpo").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    trainer.train(resume_from_checkpoint=str(ckpts[-1]) if ckpts else None)
    policy = trainer.model.eval()

    after = evaluate_policy(policy, tok, held, reward, **eval_kw) if held else None
    prompt_ids = [tok(r["prompt"], add_special_tokens=False)["input_ids"][-ctx_len:] for r in held]
    kl = kl_per_token(policy, sft, tok, prompt_ids, max_new_tokens=section.max_completion_length, seed=seed,
                      device=device) if held else None
    rl_meta = {**meta, "rl": {"from": str(generator_dir), "critic": str(critic_dir), "steps": trainer.state.global_step}}

    def write(folder: Path) -> None:
        # TRL turns the KV cache off and sets a pad id for training; the RL folder decodes as the supervised
        # one (a pad id in the config makes GPT-2 warn on every generate call, with the mask passed)
        policy.config.use_cache, policy.config.pad_token_id = sft.config.use_cache, sft.config.pad_token_id
        policy.save_pretrained(folder)
        tok.save_pretrained(folder)
        write_json(folder / META, {**rl_meta, "method": "full"})

    write_folder(out_dir, write)
    write_jsonl(log_out, records)
    metrics = {"steps": trainer.state.global_step, "stop_reason": stop.get("reason", "max_steps"),
               "train_prompts": len(train_rows), "heldout_contexts": len(held), "heldout_before": before,
               "heldout_after": after, "heldout_kl_per_token": kl, "max_kl": section.max_kl,
               "reward_first_steps": float(np.mean([r["reward"] for r in records[:5]])) if records else None,
               "reward_last_steps": float(np.mean([r["reward"] for r in records[-5:]])) if records else None}
    write_json(metrics_out, metrics)
    log.info("RL: %s", json.dumps(metrics))
    remove_work_dir(work)  # checkpoints and the merged initial policy
