"""The emotion-aligned generator: training on knowledge-prompted reviews and inference on test turns
(ECR_SPEC 4.5, 4.6, 5.3, 5.4).

Two kinds, chosen per run in config (``generator.<kind>``): DialoGPT with full fine-tuning (the paper run)
and Llama-2-Chat with a LoRA adapter (peft; the reference used LLaMA-Factory). Both go through the shared
training loop (``ecrflow.train.Trainer``: checkpoints, resume, bf16 autocast on a GPU, accelerate).

The loss covers the review tokens and the closing end-of-text only (paper Eq. 9); ``prompt_loss: true``
also trains on the prompt, as the reference's labels did (ECR_SPEC 8.19). Inference is greedy with the KV
cache over left-padded batches, prompts sorted by length so that a batch carries little padding.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import nn

from ..io import read_json, write_folder, write_json, write_jsonl
from ..train import (Stage, StageSettings, TrainConfig, TrainSettings, batches, fingerprint, make_accelerator,
                     mean_loss, mixed_precision, run_stage, validation)
from .examples import KnowledgeOptions, MovieNames, inference_example, training_example
from .prompts import prompt_lines, render

log = logging.getLogger(__name__)

META = "generator.json"
IGNORE = -100


@dataclass(frozen=True, kw_only=True)
class GeneratorTraining(StageSettings):
    """``generator.<kind>`` without its decoding keys (the training rule's)."""

    method: str  # full | lora
    format: str  # plain (DialoGPT) | chat (Llama-2-Chat)
    profile: str  # the review profile trained on
    context_max_length: int
    resp_max_length: int
    lora: dict | None = None  # r, alpha, dropout, target_modules (method lora)


@dataclass(frozen=True)
class GenerationTraining:
    """The ``generation`` keys that shape the training examples."""

    n_entities: int  # pn_e
    n_triples: int  # pn_t
    knowledge: str  # full | none | no_triples
    augment_prob: float
    prompt_loss: bool  # also train on the prompt tokens (the reference)
    seed: int


@dataclass(frozen=True)
class GeneratorSpec:
    kind: str
    model: str  # hub id or local folder of the base model
    method: str  # full | lora
    fmt: str  # plain (DialoGPT) | chat (Llama-2-Chat)
    lora: dict | None = None

    @classmethod
    def from_config(cls, kind: str, section: GeneratorTraining, model: str) -> "GeneratorSpec":
        return cls(kind, model, section.method, section.format, section.lora)


def load_tokenizer(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name)
    if tok.pad_token is None:
        # Padding is masked out of attention and loss, so the end-of-text token can serve: no new embedding
        # row (Llama-2 and DialoGPT ship none).
        tok.pad_token = tok.eos_token
    from ..models.lm import unbounded

    return unbounded(tok)


def _dtype(precision: str, method: str, training: bool):
    # Full fine-tuning keeps fp32 master weights (autocast does the bf16 maths); a frozen LoRA base and any
    # model at inference can be held in bf16.
    if mixed_precision(precision) != "bf16" or (training and method == "full"):
        return None
    return torch.bfloat16


def load_base(name, dtype=None) -> nn.Module:
    from transformers import AutoModelForCausalLM

    from ..models.lm import causal_lm_loss

    return causal_lm_loss(AutoModelForCausalLM.from_pretrained(name, dtype=dtype))


def attach_lora(model: nn.Module, lora: dict) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                     target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def load_trained(model_dir, *, dtype=None, merge: bool = False):
    """A trained generator folder -> (model in eval mode, tokenizer, metadata). A LoRA folder holds the
    adapter only; its base model is the one recorded at training time."""
    model_dir = Path(model_dir)
    meta = read_json(model_dir / META)
    tok = load_tokenizer(model_dir)
    if meta["method"] == "lora":
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_base(meta["base_model"], dtype), model_dir)
        if merge:
            model = model.merge_and_unload()
    else:
        model = load_base(model_dir, dtype)
    return model.eval(), tok, meta


# -- examples ---------------------------------------------------------------------------------------------------

def encode(tok, prompt: str, target: str | None, *, context_max_length: int, resp_max_length: int):
    """Token ids of a prompt (the last ``context_max_length``: the end, where generation starts, is kept) and
    of its target (at most ``resp_max_length`` including the closing end-of-text)."""
    p = tok(prompt, add_special_tokens=False)["input_ids"][-context_max_length:]
    if target is None:
        return p, None
    t = tok(target, add_special_tokens=False)["input_ids"][:resp_max_length - 1] + [tok.eos_token_id]
    return p, t


class Collator:
    """Right-padded prompt+target batches; labels are -100 on padding and, unless ``prompt_loss``, on the
    prompt."""

    def __init__(self, pad_id: int, prompt_loss: bool = False):
        self.pad_id = pad_id
        self.prompt_loss = prompt_loss

    def __call__(self, examples: list[tuple[list[int], list[int]]]) -> dict:
        width = max(len(p) + len(t) for p, t in examples)
        ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(examples), width), dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
        for i, (p, t) in enumerate(examples):
            seq = p + t
            ids[i, :len(seq)] = torch.tensor(seq)
            mask[i, :len(seq)] = 1
            labels[i, len(p):len(seq)] = torch.tensor(t)
            if self.prompt_loss:
                labels[i, :len(p)] = torch.tensor(p)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class CausalLMObjective(nn.Module):
    """``model(batch, task)`` for the shared loop: the LM's mean cross-entropy over the labelled tokens."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, batch: dict, task: str = "gen") -> dict:
        out = self.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        return {"loss": out.loss}


def review_examples(path, tok, names: MovieNames, templates: list[str], spec: GeneratorSpec,
                    gen: GenerationTraining, section: GeneratorTraining, *,
                    augment: bool) -> tuple[list[tuple[list[int], list[int]]], list[str]]:
    opts = KnowledgeOptions.from_config(asdict(gen))
    out, prompts = [], []
    for row in pq.read_table(path).to_pylist():
        k, target = training_example(row, names, templates, opts, augment=augment and gen.knowledge == "full")
        prompt = render(tok, prompt_lines(k, gen.knowledge), spec.fmt)
        out.append(encode(tok, prompt, target, context_max_length=section.context_max_length,
                          resp_max_length=section.resp_max_length))
        prompts.append(prompt)
    return out, prompts


# -- training ---------------------------------------------------------------------------------------------------

def train_generator(train, valid, items, entity2id, templates, *, out_dir, metrics_out, work_dir, spec: GeneratorSpec,
                    section: GeneratorTraining, gen: GenerationTraining, train_cfg: TrainSettings) -> None:
    """Fine-tune (or LoRA-train) the generator on the knowledge-prompted reviews; the validation loss per
    labelled token, also of the base model before training."""
    def build(acc) -> Stage:
        tok = load_tokenizer(spec.model)
        lm = load_base(spec.model, _dtype(train_cfg.precision, spec.method, training=True))
        trainable = attach_lora(lm, spec.lora) if spec.method == "lora" else lm
        names = MovieNames.load(items, entity2id)
        tmpl = [t["text"] for t in read_json(templates)]
        tr, _ = review_examples(train, tok, names, tmpl, spec, gen, section, augment=True)
        va, _ = review_examples(valid, tok, names, tmpl, spec, gen, section, augment=False)
        n_params = sum(p.numel() for p in trainable.parameters() if p.requires_grad)
        log.info("%s generator (%s): %d training and %d validation reviews, %d trainable parameters", spec.kind,
                 spec.method, len(tr), len(va), n_params)
        collate = Collator(tok.pad_token_id, gen.prompt_loss)
        model = CausalLMObjective(trainable)
        n_labels = lambda batch: int((batch["labels"][:, 1:] != IGNORE).sum())  # noqa: E731  (per-token mean)

        def measure(va) -> dict:
            return {"loss": mean_loss(model, batches(va, collate, section.eval_batch_size, acc.device), task="gen",
                                      accelerator=acc, weight=n_labels)}

        def write(result) -> None:
            meta = {"kind": spec.kind, "method": spec.method, "format": spec.fmt, "base_model": spec.model,
                    "lora": spec.lora, "context_max_length": section.context_max_length,
                    "resp_max_length": section.resp_max_length, "knowledge": gen.knowledge}

            def write_model(folder: Path) -> None:
                trainable.save_pretrained(folder)  # a peft model saves its adapter only
                tok.save_pretrained(folder)
                write_json(folder / META, meta)

            write_folder(out_dir, write_model)
            # the base model on the validation reviews: what fine-tuning gained
            write_json(metrics_out, result.summary(valid_loss_before_training=result.before["loss"],
                                                   train_reviews=len(tr), valid_reviews=len(va),
                                                   trainable_parameters=n_params))

        return Stage(model, trainable, tr, collate, write, evaluate=validation(va, measure, empty={"loss": None}),
                     params_only=True, validate_before=True)

    fp = fingerprint({"spec": spec.__dict__, "section": asdict(section), "gen": asdict(gen),
                      "precision": train_cfg.precision}, [train, valid, items, entity2id, templates])
    run_stage(build, task="gen", cfg=TrainConfig.from_config(section, train_cfg), work_dir=work_dir, fingerprint=fp,
              seed=section.seed)


# -- inference --------------------------------------------------------------------------------------------------

@torch.no_grad()
def generate(model: nn.Module, tok, prompts: list[list[int]], *, batch_size: int, max_new_tokens: int,
             no_repeat_ngram_size: int = 3, device=None) -> list[list[int]]:
    """Greedy continuations of token-id prompts (up to, not including, the end-of-text), batched and
    left-padded, with the KV cache; returned in the order of ``prompts``."""
    from transformers import GenerationConfig

    device = device or next(model.parameters()).device
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                           no_repeat_ngram_size=no_repeat_ngram_size, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[r, width - len(prompts[i]):] = 1
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg)
        for r, i in enumerate(idx):
            new = gen[r, width:].tolist()
            out[i] = new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new
    return out


def _first_per_turn(predictions) -> list[dict]:
    """One row per (dialog, turn) in file order: turns with several gold items share one ranking."""
    seen, rows = set(), []
    t = pq.read_table(predictions, columns=["dialog_id", "turn", "top_items"]).to_pylist()
    for r in t:
        key = (r["dialog_id"], r["turn"])
        if key not in seen:
            seen.add(key)
            rows.append(r)
    return rows


def infer(model_dir, predictions, responses, rec, items, entity2id, relation2id, subkg, movie_knowledge, *, out,
          stats_out, gen: dict, section: dict, knowledge_relations: list[str], train_cfg: dict) -> None:
    """Emotion-aligned responses for the test recommender turns: the stage-2 top item, its knowledge, u_r as
    the first sentence; the final response is u_r followed by the generated u_e (the paper's u_r ⊕ u_e)."""
    from ..recommend.training import load_responses
    from .knowledge import one_hop

    acc = make_accelerator(train_cfg["precision"])
    model, tok, meta = load_trained(model_dir, dtype=_dtype(train_cfg["precision"], "lora", training=False),
                                    merge=True)
    model.to(acc.device)
    names = MovieNames.load(items, entity2id)
    opts = KnowledgeOptions.from_config(gen)
    neighbours = one_hop(read_json(subkg), read_json(relation2id), tuple(knowledge_relations))
    movie_entities = {r["movie"]: r["entities"] for r in pq.read_table(movie_knowledge).to_pylist()}
    u_r = load_responses(responses)
    ref = {(r["dialog_id"], int(r["turn"])): r["resp_text"]
           for r in pq.read_table(rec, columns=["dialog_id", "turn", "resp_text"]).to_pylist()}
    rows, prompts, skipped = [], [], 0
    for p in _first_per_turn(predictions):
        key = (p["dialog_id"], int(p["turn"]))
        if key not in u_r:
            skipped += 1  # no u_r for this turn (its context is empty): nothing to continue from
            continue
        movie = int(p["top_items"][0])
        k = inference_example(key[0], key[1], movie, u_r[key], movie_entities.get(movie, []),
                              neighbours.get(movie, []), names, opts)
        prompt = render(tok, prompt_lines(k, meta["knowledge"]), meta["format"])
        ids, _ = encode(tok, prompt, None, context_max_length=meta["context_max_length"],
                        resp_max_length=meta["resp_max_length"])
        prompts.append(ids)
        rows.append({"dialog_id": key[0], "turn": key[1], "item": movie, "item_name": k.movie_name,
                     "prompt": prompt, "u_r": k.first_sentence, "reference": ref.get(key, "")})
    t0 = time.time()
    with acc.autocast():
        new = generate(model, tok, prompts, batch_size=section["gen_batch_size"], max_new_tokens=section["max_gen_len"],
                       no_repeat_ngram_size=gen["no_repeat_ngram_size"], device=acc.device)
    seconds = time.time() - t0
    for row, ids in zip(rows, new):
        u_e = tok.decode(ids, skip_special_tokens=True).strip()
        row.update(u_e=u_e, response=f"{row['u_r']} {u_e}".strip(), new_tokens=len(ids))
    write_jsonl(out, rows)
    n_tokens = sum(len(x) for x in new)
    stats = {"turns": len(rows), "skipped_without_u_r": skipped, "new_tokens": n_tokens,
             "generation_seconds": round(seconds, 2), "tokens_per_second": round(n_tokens / max(seconds, 1e-9), 1),
             "generator": meta}
    write_json(stats_out, stats)
    log.info("%d responses (%d turns without u_r skipped), %.1f new tokens/s", len(rows), skipped,
             stats["tokens_per_second"])
