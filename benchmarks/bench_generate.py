"""Generator inference on this machine: new tokens per second, batched (left-padded, KV cache, the way
``generate_responses`` runs) against one prompt at a time, greedy with ``no_repeat_ngram_size`` 3.

Two randomly initialised GPT-2 models: the toy run's size (2 layers, d 64) and DialoGPT-small's (12 layers,
d 768, 50,257 tokens). Prompts are knowledge prompts' length (60 to 140 tokens). Every prompt generates
exactly ``--new-tokens`` tokens (the end-of-text token is never emitted), so both modes do the same work.

    python benchmarks/bench_generate.py                       # both sizes, 32 prompts, 40 new tokens
    python benchmarks/bench_generate.py --sizes dialogpt-small --prompts 64 --new-tokens 150 --batch 64
"""

from __future__ import annotations

import argparse
import json
import resource
import time

SIZES = {
    "tiny": dict(vocab_size=2000, n_embd=64, n_layer=2, n_head=4),
    "dialogpt-small": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(size: str, n_prompts: int, new_tokens: int, batch: int, seed: int = 0) -> dict:
    import numpy as np
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from ecrflow.generate.generator import generate

    torch.manual_seed(seed)
    spec = SIZES[size]
    eos = spec["vocab_size"] - 1
    lm = GPT2LMHeadModel(GPT2Config(**spec, n_positions=1024, eos_token_id=eos, bos_token_id=eos)).eval()

    def never_end(module, args, output):  # end-of-text is never the argmax: every prompt runs to the limit
        output.logits[..., eos] = -1e4

    lm.register_forward_hook(never_end)

    class Tok:
        pad_token_id = eos
        eos_token_id = eos

    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, eos, int(rng.integers(60, 141))).tolist() for _ in range(n_prompts)]
    result = {"size": size, "params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 1),
              "prompts": n_prompts, "new_tokens": new_tokens, "batch": batch}
    generate(lm, Tok, prompts[:2], batch_size=2, max_new_tokens=4)  # warm-up
    for mode, bs in (("batched", batch), ("one_at_a_time", 1)):
        t0 = time.perf_counter()
        out = generate(lm, Tok, prompts, batch_size=bs, max_new_tokens=new_tokens, no_repeat_ngram_size=3)
        dt = time.perf_counter() - t0
        n = sum(len(o) for o in out)
        result[mode] = {"seconds": round(dt, 2), "tokens": n, "tokens_per_s": round(n / dt, 1)}
    result["speedup"] = round(result["batched"]["tokens_per_s"] / result["one_at_a_time"]["tokens_per_s"], 2)
    result["peak_rss_mb"] = round(peak_rss_mb())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=40)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':>15} {'params':>8} {'batched tok/s':>14} {'single tok/s':>13} {'speedup':>8} {'peak RSS':>9}")
    for size in args.sizes:
        r = run(size, args.prompts, args.new_tokens, args.batch)
        print(f"{r['size']:>15} {r['params_m']:>7}M {r['batched']['tokens_per_s']:>14} "
              f"{r['one_at_a_time']['tokens_per_s']:>13} {r['speedup']:>7}x {r['peak_rss_mb']:>7}MB")
        print(json.dumps(r))


if __name__ == "__main__":
    main()
