"""Stage-2 training step at the paper's shapes, on this machine: samples/s, peak memory, time split.

Shapes (ECR_SPEC 4-5, README flags): a randomly initialised DialoGPT-small-sized LM (12 layers, d 768) and a
RoBERTa-base-sized text encoder, 30,000 entities, 300,000 KG triples over 25 relations (both directions plus
self loops, as UniCRS builds the graph), batch 16, 200 context tokens, 32 context entities with up to 3
emotions each, global entities on (co-occurrence rows with ~20 non-zeros each), 10 soft tokens, weighted loss.

Each precision runs in a fresh process so that its peak resident memory is its own:

    python benchmarks/bench_recommend.py                  # fp32 and bf16 autocast, 5 measured steps each
    python benchmarks/bench_recommend.py --steps 3 --precision bf16

The reference implementation, measured on a 2-core machine at exactly these shapes, needs 51 s per step
(0.31 samples/s) and 22 GB peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

N_ENTITY = 30_000
N_TRIPLES = 300_000
N_RELATION = 25
BATCH = 16
CONTEXT = 200
ENTITIES = 32


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(seed: int = 0, precision: str = "fp32"):
    import numpy as np
    import scipy.sparse as sp
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, RobertaConfig, RobertaModel

    from ecrflow.cooccurrence import CoOccurrence
    from ecrflow.models.lm import FrozenModels, _freeze
    from ecrflow.recommend.data import Collator, Sample
    from ecrflow.recommend.model import PromptedModel, build_prompt_encoder

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)

    class Tok:  # only the ids the collator needs
        pad_token_id = 50257

    lm = _freeze(GPT2LMHeadModel(GPT2Config(vocab_size=50259)))
    enc = _freeze(RobertaModel(RobertaConfig(vocab_size=50266, max_position_embeddings=514)))
    if precision == "bf16":  # as models.lm.load_frozen does when training in bf16
        lm, enc = lm.to(torch.bfloat16), enc.to(torch.bfloat16)
    frozen = FrozenModels(lm, Tok(), enc, Tok())
    h, t = rng.integers(0, N_ENTITY - 1, N_TRIPLES), rng.integers(0, N_ENTITY - 1, N_TRIPLES)
    r = rng.integers(0, N_RELATION - 1, N_TRIPLES)
    loops = np.arange(N_ENTITY)
    edge_index = torch.from_numpy(np.stack([np.r_[h, t, loops], np.r_[t, h, loops]]))
    edge_type = torch.from_numpy(np.r_[r, r, np.full(N_ENTITY, N_RELATION - 1)])
    meta = {"n_entity": N_ENTITY, "n_relation": N_RELATION, "pad_entity": N_ENTITY - 1}
    prompt = build_prompt_encoder(frozen, meta, edge_index, edge_type, num_bases=8, emotion_dim=48, n_prefix=10,
                                  emotions=True, global_entities=True, fusion="entity", mask_padding=True)
    model = PromptedModel(frozen, prompt)
    rows = rng.integers(0, N_ENTITY - 1, N_ENTITY * 20)
    cols = rng.integers(0, N_ENTITY - 1, N_ENTITY * 20)
    counts = sp.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(N_ENTITY, N_ENTITY))
    collate = Collator(lm_pad=50257, enc_pad=1, pad_entity=N_ENTITY - 1, cooccurrence=CoOccurrence(counts))
    labels = ["like", "happy", "curious"]
    samples = [Sample(dialog_id=str(i), turn=1, lm_ids=rng.integers(0, 50000, CONTEXT).tolist(),
                      enc_ids=rng.integers(3, 50000, CONTEXT).tolist(),
                      entity=rng.integers(0, N_ENTITY - 1, ENTITIES).tolist(),
                      emotions=[labels] * ENTITIES, emotion_probs=[[0.6, 0.3, 0.1]] * ENTITIES,
                      target=int(rng.integers(0, N_ENTITY - 1)), feedback="like", weight=2.0)
               for i in range(BATCH)]
    return model, collate, samples


def run(steps: int, precision: str) -> dict:
    import torch

    from ecrflow.train import param_groups

    from ecrflow.smk import tune_allocator

    tune_allocator()  # as every workflow job does (ecrflow.smk.run)
    torch.set_num_threads(torch.get_num_threads())
    t0 = time.perf_counter()
    model, collate, samples = build(precision=precision)
    setup_s = time.perf_counter() - t0
    rss_setup = peak_rss_mb()
    opt = torch.optim.AdamW(param_groups(model.prompt, 0.01), lr=1e-4)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    split = {k: [] for k in ("collate", "rgcn", "text_encoder", "prompt", "lm_forward", "backward", "optimizer",
                             "step")}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        split[name].append(time.perf_counter() - t)
        return out

    for i in range(steps + 1):  # the first step warms up and is not counted
        t_step = time.perf_counter()
        batch = timed("collate", lambda: collate(samples))
        with autocast:
            table = timed("rgcn", model.prompt.entity_table)
            with torch.no_grad():
                states = timed("text_encoder", lambda: model.encoder(
                    input_ids=batch["enc_ids"], attention_mask=batch["enc_mask"]).last_hidden_state)
            prefix = timed("prompt", lambda: model.prompt(
                entity_table=table, token_states=states, token_mask=batch["enc_mask"],
                entity_ids=batch["entity_ids"], entity_mask=batch["entity_mask"],
                emotion_ids=batch["emotion_ids"], emotion_probs=batch["emotion_probs"],
                global_rows=batch["global_rows"], has_global=batch["has_global"]))

            def lm_and_loss():
                from ecrflow.models.lm import last_hidden

                h = last_hidden(model.lm, prefix, batch["lm_ids"], batch["lm_mask"])
                logits = (h @ table.t().to(h.dtype)).float()
                ce = torch.nn.functional.cross_entropy(logits, batch["target"], reduction="none")
                return (batch["weight"] * ce).mean()

            loss = timed("lm_forward", lm_and_loss)
        timed("backward", loss.backward)
        timed("optimizer", lambda: (opt.step(), opt.zero_grad(set_to_none=True)))
        split["step"].append(time.perf_counter() - t_step)
        if i == 0:
            for v in split.values():
                v.clear()
    mean = {k: sum(v) / len(v) for k, v in split.items()}
    return {"precision": precision, "steps": steps, "threads": torch.get_num_threads(),
            "samples_per_s": BATCH / mean["step"], "seconds_per_step": mean["step"],
            "split_s": {k: round(v, 3) for k, v in mean.items() if k != "step"},
            "peak_rss_mb": round(peak_rss_mb()), "rss_after_setup_mb": round(rss_setup), "setup_s": round(setup_s, 1),
            "trainable_params": sum(p.numel() for p in model.prompt.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    ap.add_argument("--json", action="store_true", help="print one JSON object (used for the child processes)")
    args = ap.parse_args()
    if args.precision == "both":
        for p in ("fp32", "bf16"):
            out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--precision", p, "--json"],
                                 check=True, capture_output=True, text=True).stdout
            report(json.loads(out.strip().splitlines()[-1]))
        return
    result = run(args.steps, args.precision)
    print(json.dumps(result)) if args.json else report(result)


def report(r: dict) -> None:
    print(f"stage-2 step, {r['precision']}, batch {BATCH}, {r['threads']} threads, {r['steps']} steps: "
          f"{r['samples_per_s']:.2f} samples/s ({r['seconds_per_step']:.2f} s/step), peak RSS {r['peak_rss_mb']} MB "
          f"({r['rss_after_setup_mb']} MB after building the models), {r['trainable_params'] / 1e6:.1f}M trainable")
    print("  time split (s): " + ", ".join(f"{k} {v}" for k, v in r["split_s"].items()))


if __name__ == "__main__":
    main()
