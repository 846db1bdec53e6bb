"""Before submitting: how long and how much memory each training rule will take here, at the configured
shapes, next to what the config asks SLURM for.

    python -m ecrflow.estimate --configfile config/config.yaml             # the paper run
    python -m ecrflow.estimate --configfile config/config.yaml config/toy.yaml

For every training stage it builds the stage's model at the configured architecture with random weights
(no download: the architectures of the paper's hub models are known here; a local folder is read), times a
few optimiser steps at the configured micro-batch and sequence lengths on this machine (CPU, or the GPU when
there is one), and projects the rule's wall time from the number of micro-batches the run will take
(sample counts from the built data when it is there, else ReDial's). Each stage runs in its own process so
that its peak memory is its own. A 7B model is timed on two of its layers and one sequence and scaled by its
depth and the batch (its other weights are counted, not allocated). Batches are timed at the configured maximum lengths (real batches are
often shorter) and evaluation and generation are not included, so read the projection as an order of
magnitude: a rule flagged here will not fit; exit code 1 when any is flagged.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from .config import load_config_files, run_folder

# The paper run's hub models, so that nothing is downloaded to estimate them.
KNOWN = {
    "microsoft/DialoGPT-small": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)),
    "openai-community/gpt2": ("gpt2", dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)),
    "microsoft/DialoGPT-medium": ("gpt2", dict(n_layer=24, n_embd=1024, n_head=16, vocab_size=50257,
                                               n_positions=1024)),
    "FacebookAI/roberta-base": ("roberta", dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                                                intermediate_size=3072, vocab_size=50265,
                                                max_position_embeddings=514)),
    "meta-llama/Llama-2-7b-chat-hf": ("llama", dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                                                    num_key_value_heads=32, intermediate_size=11008,
                                                    vocab_size=32000, max_position_embeddings=4096)),
}
# Sizes assumed when the processed data is not there yet (ReDial; override with --samples stage=N).
ASSUMED_SAMPLES = {"pretrain": 65_000, "recommend": 65_000, "conversation": 65_000, "emotion_classifier": 5_082}
ASSUMED_KG = {"n_entity": 30_000, "n_triples": 300_000, "n_relation": 25}
PROXY_LAYERS = 2  # layers actually built for models above PROXY_PARAMS parameters
PROXY_PARAMS = 2e9


def kg_sizes(config: dict) -> dict:
    """The built KG's sizes (results/<run>/data/kg/kg_meta.json) when this run has one, else ReDial's."""
    path = Path(run_folder(config)) / "data" / "kg" / "kg_meta.json"
    if path.exists():
        meta = json.loads(path.read_text())
        return {"n_entity": meta["n_entity"], "n_triples": meta["n_triples"], "n_relation": meta["n_relation"]}
    return ASSUMED_KG


def arch(name: str):
    """A transformers config for a model name: a local folder's own, or the known hub architecture."""
    from transformers import AutoConfig, GPT2Config, LlamaConfig, RobertaConfig

    if Path(name).is_dir():
        return AutoConfig.from_pretrained(name)
    if name in KNOWN:
        kind, kw = KNOWN[name]
        return {"gpt2": GPT2Config, "roberta": RobertaConfig, "llama": LlamaConfig}[kind](**kw)
    try:
        return AutoConfig.from_pretrained(name)
    except OSError as e:
        raise SystemExit(f"estimate: the architecture of {name!r} is unknown here and cannot be fetched ({e}); "
                         f"use a local model folder") from None


def n_layers(cfg) -> int:
    return getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer")


def _with_layers(cfg, k: int):
    cfg = cfg.__class__.from_dict(cfg.to_dict())
    if hasattr(cfg, "num_hidden_layers"):
        cfg.num_hidden_layers = k
    else:
        cfg.n_layer = k
    return cfg


def param_count(cfg, kind: str = "causal") -> int:
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    with torch.device("meta"):
        model = (AutoModelForCausalLM if kind == "causal" else AutoModel).from_config(cfg)
    return sum(p.numel() for p in model.parameters())


# -- one step per stage ------------------------------------------------------------------------------------

def _timed_steps(step, steps: int) -> float:
    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def _device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _adamw_step(model, params, loss_fn):
    import torch

    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-5)

    def step():
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def prompt_stage(config: dict, stage: str, steps: int) -> dict:
    """Stage 1, the conversation module or stage 2: the frozen LM and text encoder, the KG prompt encoder
    (trained), one micro-batch of the configured length."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    from .models.lm import FrozenModels, _freeze
    from .recommend.data import Collator, Sample
    from .recommend.model import PromptedModel, build_prompt_encoder

    sec = config[stage]
    dev = _device()
    lm_cfg, enc_cfg = arch(config["models"]["plm"]), arch(config["models"]["text_encoder"])
    lm, enc = _freeze(AutoModelForCausalLM.from_config(lm_cfg)), _freeze(AutoModel.from_config(enc_cfg))

    class Tok:
        pad_token_id = 0

    frozen = FrozenModels(lm, Tok(), enc, Tok())
    kg = kg_sizes(config)
    rng = np.random.default_rng(0)
    h, t = rng.integers(0, kg["n_entity"] - 1, kg["n_triples"]), rng.integers(0, kg["n_entity"] - 1, kg["n_triples"])
    r = rng.integers(0, kg["n_relation"] - 1, kg["n_triples"])
    edge_index = torch.from_numpy(np.stack([np.r_[h, t], np.r_[t, h]]))
    edge_type = torch.from_numpy(np.r_[r, r])
    meta = {"n_entity": kg["n_entity"], "n_relation": kg["n_relation"], "pad_entity": kg["n_entity"] - 1}
    prompt = build_prompt_encoder(frozen, meta, edge_index, edge_type, num_bases=8,
                                  emotion_dim=sec.get("emotion_dim", 48), n_prefix=10, emotions=True,
                                  global_entities=False, fusion="entity", mask_padding=True)
    model = PromptedModel(frozen, prompt).to(dev)
    b = sec["batch_size"]  # the micro-batch; grad_accum of them make one optimiser step
    length = sec["max_length"] + (sec.get("resp_max_length", 0) if stage == "conversation" else 0)
    vocab = min(lm_cfg.vocab_size, enc_cfg.vocab_size) - 1
    samples = [Sample(dialog_id=str(i), turn=1, lm_ids=rng.integers(3, vocab, length).tolist(),
                      enc_ids=rng.integers(3, vocab, length).tolist(),
                      entity=rng.integers(0, kg["n_entity"] - 1, 32).tolist(),
                      emotions=[["like", "happy", "curious"]] * 32, emotion_probs=[[0.6, 0.3, 0.1]] * 32,
                      target=int(rng.integers(0, kg["n_entity"] - 1)), feedback="like", weight=2.0)
               for i in range(b)]
    batch = {k: (v.to(dev) if hasattr(v, "to") else v)
             for k, v in Collator(lm_pad=0, enc_pad=1, pad_entity=kg["n_entity"] - 1)(samples).items()}

    def loss_fn():
        return model(batch, "rec")["loss"]

    sec_per_step = _timed_steps(_adamw_step(model, model.prompt.parameters(), loss_fn), steps)
    return {"micro_batch": b, "length": length, "seconds_per_micro_batch": sec_per_step}


def causal_finetune(config: dict, stage: str, steps: int) -> dict:
    """A generator (full fine-tuning, or LoRA for method lora) at context + response length."""
    import torch
    from transformers import AutoModelForCausalLM

    kind = stage.removeprefix("generator_")
    sec = config["generator"][kind]
    cfg = arch(config["models"][stage])
    total_layers = n_layers(cfg)
    n_params = param_count(cfg)
    proxy = n_params > PROXY_PARAMS
    built = _with_layers(cfg, PROXY_LAYERS) if proxy else cfg
    dev = _device()
    model = AutoModelForCausalLM.from_config(built).to(dev)
    if sec["method"] == "lora":
        from .generate.generator import attach_lora

        model = attach_lora(model, sec["lora"])
    b = sec["batch_size"]
    length = sec["context_max_length"] + sec["resp_max_length"]
    timed_b = 1 if proxy else b  # a proxy is timed on one sequence and scaled by the batch (compute-bound)
    ids = torch.randint(3, cfg.vocab_size - 1, (timed_b, length), device=dev)
    step = _adamw_step(model, model.parameters(), lambda: model(input_ids=ids, labels=ids).loss)
    sec_per_step = _timed_steps(step, steps)
    scale = total_layers / PROXY_LAYERS * b / timed_b if proxy else 1.0
    built_params = sum(p.numel() for p in model.parameters())
    return {"micro_batch": b, "length": length, "seconds_per_micro_batch": sec_per_step * scale,
            # the layers not built, as fp32 weights (bf16 on a GPU halves it); their activations are not counted
            "extra_mb": (n_params - built_params) * 4 / 2**20 if proxy else 0.0,
            "note": f"timed on {PROXY_LAYERS} of {total_layers} layers and 1 of {b} sequences, scaled; memory: "
                    f"+ the other layers' weights" if proxy else ""}


def encoder_finetune(config: dict, stage: str, steps: int) -> dict:
    """The emotion classifier (GPT-2 style, sequence classification) or the critic (encoder + heads)."""
    import torch
    from transformers import AutoModel

    sec = config["classifier" if stage == "emotion_classifier" else "critic"]
    cfg = arch(config["models"][stage])
    dev = _device()
    model = AutoModel.from_config(cfg).to(dev)
    head = torch.nn.Linear(cfg.hidden_size if hasattr(cfg, "hidden_size") else cfg.n_embd, 9).to(dev)
    b, length = sec["batch_size"], sec["max_length"]
    ids = torch.randint(3, cfg.vocab_size - 1, (b, length), device=dev)

    def loss_fn():
        return head(model(input_ids=ids).last_hidden_state.mean(1)).pow(2).mean()

    sec_per_step = _timed_steps(_adamw_step(model, [*model.parameters(), *head.parameters()], loss_fn), steps)
    return {"micro_batch": b, "length": length, "seconds_per_micro_batch": sec_per_step}


def rl_stage(config: dict, stage: str, steps: int) -> dict:
    """One GRPO step: sampling prompts x generations completions, then policy forward/backward and the
    reference forward over them."""
    import torch
    from transformers import AutoModelForCausalLM

    sec = config["rl"]
    kind = sec["kind"]
    gen = config["generator"][kind]
    cfg = arch(config["models"][f"generator_{kind}"])
    dev = _device()
    model = AutoModelForCausalLM.from_config(cfg).to(dev)
    ref = AutoModelForCausalLM.from_config(cfg).to(dev).eval()
    n = sec["prompts_per_step"] * sec["num_generations"]
    prompt = torch.randint(3, cfg.vocab_size - 1, (n, gen["context_max_length"]), device=dev)
    new = sec["max_completion_length"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)

    def step():
        with torch.no_grad():
            seqs = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                  max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
            ref(input_ids=seqs)
        model(input_ids=seqs, labels=seqs).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return {"micro_batch": n, "length": gen["context_max_length"] + new,
            "seconds_per_micro_batch": _timed_steps(step, steps)}


STAGES = {  # rule -> (resources key, estimator)
    "pretrain": ("pretrain", prompt_stage),
    "conversation_train": ("conversation", prompt_stage),
    "recommend_train": ("recommend", prompt_stage),
    "generator_train_dialogpt": ("generator_dialogpt", causal_finetune),
    "generator_train_llama": ("generator_llama", causal_finetune),
    "emotion_classifier": ("emotion_classifier", encoder_finetune),
    "critic": ("critic", encoder_finetune),
    "rl_train": ("rl", rl_stage),
}


def micro_batches(config: dict, rule: str, samples: dict) -> tuple[int, str]:
    """Micro-batches the whole run takes, and where the sample count came from."""
    res, _ = STAGES[rule]
    if rule == "rl_train":
        return config["rl"]["max_steps"], "rl.max_steps"
    if rule.startswith("generator_train_"):
        kind = rule.removeprefix("generator_train_")
        sec = config["generator"][kind]
        n, src = _count(samples, res, lambda: _reviews(config, sec["profile"]))
    elif rule == "critic":
        sec = config["critic"]
        n_sys = 1 + len(config["generation"]["kinds"])
        n, src = _count(samples, res, lambda: (config["judge"]["samples"]["valid"] * n_sys * 0.8, "judge.samples"))
    elif rule == "emotion_classifier":
        sec = config["classifier"]
        n, src = _count(samples, res, lambda: (config["emotion_labels"]["utterances"] * 0.9, "emotion_labels"))
    else:
        stage = res
        sec = config[stage]
        split = "pretrain" if stage in ("pretrain", "conversation") else "rec"
        n, src = _count(samples, res, lambda: _processed(config, split, stage))
    per_epoch = math.ceil(n / sec["batch_size"])
    return per_epoch * sec["epochs"], f"{int(n):,} samples ({src}) x {sec['epochs']} epochs"


def _count(samples: dict, key: str, default):
    if key in samples:
        return samples[key], "--samples"
    return default()


def _processed(config: dict, split: str, stage: str):
    """This run's training samples (results/<run>/data/processed), else ReDial's size: another run's files
    (the toy's, built in the same folder) say nothing of this one."""
    path = Path(run_folder(config)) / "data" / "processed" / f"train_{split}.parquet"
    if path.exists():
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows, str(path)
    return ASSUMED_SAMPLES[stage], "assumed ReDial size"


def _reviews(config: dict, profile: str):
    path = Path(run_folder(config)) / "generation" / "reviews" / f"{profile}_train.parquet"
    if path.exists():
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows, str(path)
    from .paper import REVIEW_COUNTS

    return REVIEW_COUNTS.get(profile, {"reviews": 35_000})["reviews"] * 0.9, "the paper's review count"


# -- driver -------------------------------------------------------------------------------------------------

def measure(config: dict, rule: str, steps: int) -> dict:
    """Run in a child process: time the rule's steps and report peak memory."""
    import torch

    torch.manual_seed(0)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _, fn = STAGES[rule]
    out = fn(config, STAGES[rule][0], steps)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["device"] = torch.cuda.get_device_name()
    else:
        out["device"] = f"cpu ({torch.get_num_threads()} threads)"
    return out


def rules_for(config: dict) -> list[str]:
    rules = ["pretrain", "conversation_train", "recommend_train"]
    rules += [f"generator_train_{k}" for k in config["generation"]["kinds"]]
    if config["data"]["emotions"] == "pipeline":
        rules.append("emotion_classifier")
    if config["judge"]["judges"] and config["generation"]["kinds"]:
        rules.append("critic")
        if config["rl"]["kind"]:
            rules.append("rl_train")
    return rules


def _fmt_minutes(m: float) -> str:
    return f"{m:,.0f} min" if m < 120 else f"{m / 60:,.1f} h"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ecrflow estimate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configfile", nargs="+", required=True, help="config files, merged in order")
    ap.add_argument("--base", default="config/config.yaml",
                    help="merged first when it exists, as the Snakefile does (default: config/config.yaml)")
    ap.add_argument("--steps", type=int, default=2, help="timed optimiser steps per stage (after one warm-up)")
    ap.add_argument("--rules", nargs="*", help="only these rules")
    ap.add_argument("--samples", nargs="*", default=[], help="training samples per stage, e.g. recommend=65000")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    config = load_config_files(args.configfile, args.base)
    if args.child:
        print(json.dumps(measure(config, args.child, args.steps)))
        return 0
    samples = {k: float(v) for k, v in (s.split("=", 1) for s in args.samples)}
    rows = []
    todo = args.rules or rules_for(config)
    for k, rule in enumerate(todo, start=1):
        res_key = STAGES[rule][0]
        t0 = time.monotonic()
        print(f"[{k}/{len(todo)}] {rule}: building the model and timing {args.steps} optimiser step(s) ...",
              file=sys.stderr, flush=True)
        req = config["resources"].get(res_key, config["resources"]["default"])
        proc = subprocess.run([sys.executable, "-m", "ecrflow.estimate", "--configfile", *args.configfile, "--base",
                               args.base or "", "--steps", str(args.steps), "--child", rule],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            rows.append({"rule": rule, "error": tail[0]})
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"[{k}/{len(todo)}] {rule}: {m['seconds_per_micro_batch']:.2f} s per micro-batch on {m['device']} "
              f"(measured in {time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
        n, src = micro_batches(config, rule, samples)
        minutes = m["seconds_per_micro_batch"] * n / 60
        extra = m.get("extra_mb", 0.0)
        mem = m.get("peak_gpu_mb", m["peak_rss_mb"]) + extra
        row = {"rule": rule, "device": m["device"], "micro_batch": m["micro_batch"], "length": m["length"],
               "s_per_micro_batch": round(m["seconds_per_micro_batch"], 3), "micro_batches": n, "from": src,
               "projected_min": round(minutes, 1), "runtime_min": req["runtime"],
               "peak_mb": round(mem), "mem_mb": req["mem_mb"], "gpus": req["gpus"], "note": m.get("note", "")}
        row["fits"] = minutes <= req["runtime"] and m["peak_rss_mb"] + (0 if "peak_gpu_mb" in m else extra) <= req["mem_mb"]
        rows.append(row)
    print(f"{'rule':26} {'batch x len':>12} {'s/batch':>9} {'batches':>10} {'projected':>11} {'runtime':>9} "
          f"{'peak MB':>8} {'mem_mb':>7}  fits")
    for r in rows:
        if "error" in r:
            print(f"{r['rule']:26} failed: {r['error']}")
            continue
        flag = "yes" if r["fits"] else "NO"
        print(f"{r['rule']:26} {str(r['micro_batch']) + ' x ' + str(r['length']):>12} {r['s_per_micro_batch']:>9} "
              f"{r['micro_batches']:>10,} {_fmt_minutes(r['projected_min']):>11} {_fmt_minutes(r['runtime_min']):>9} "
              f"{r['peak_mb']:>8,} {r['mem_mb']:>7,}  {flag}  {r['note']}")
    devices = sorted({r["device"] for r in rows if "device" in r})
    print(f"measured on: {', '.join(devices)}; projected = s/batch x batches (at the configured maximum lengths; "
          f"evaluation and generation not included)")
    for r in rows:
        if "from" in r:
            print(f"  {r['rule']}: {r['from']}")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0 if all(r.get("fits", False) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
