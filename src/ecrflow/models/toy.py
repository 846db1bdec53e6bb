"""Tiny stand-ins for the hub models, built offline for the toy run and the tests.

No weights can be downloaded here, so the toy run trains a byte-level BPE tokenizer on the toy dialogues
and builds a tiny GPT-2 (the frozen dialogue LM and, later, the generator) and a tiny RoBERTa (the text
encoder) from configs. The language model gets a few hundred steps of next-token training on the training
dialogues so that it is a (weak) pretrained LM like DialoGPT rather than noise; the encoder stays random.
They are saved with ``save_pretrained`` and loaded by exactly the code that loads the hub models.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..constants import MOVIE_TOKEN

log = logging.getLogger(__name__)

# The real DialoGPT tokenizer has only <|endoftext|>; <pad> and <movie> are added by the shared loading code
# (models.lm.prepare_tokenizer), exactly as for the hub model.
SPECIAL = ["<|endoftext|>", "<s>", "<pad>", "</s>", "<unk>", "<mask>"]


@dataclass(frozen=True)
class ToyModelSpec:
    """The ``toy.models`` config section: the size of every tiny model and its language-model training."""

    vocab_size: int  # of the BPE tokenizer trained on the toy dialogues
    hidden: int
    n_layer: int
    n_head: int
    lm_steps: int  # next-token training steps on the toy texts


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL + [MOVIE_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def _wrap(tok, **specials):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=512, **specials)


def build_toy_models(texts: list[str], lm_dir, encoder_dir, *, vocab_size: int = 2000, hidden: int = 64,
                     n_layer: int = 2, n_head: int = 4, lm_steps: int = 300, seed: int = 0) -> dict:
    """Tokenizer + tiny GPT-2 (briefly trained on ``texts``) + tiny RoBERTa, saved to two directories."""
    from transformers import GPT2Config, GPT2LMHeadModel, RobertaConfig, RobertaModel

    torch.manual_seed(seed)
    tok = train_tokenizer(texts, vocab_size)
    lm_tok = _wrap(tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<unk>")
    enc_tok = _wrap(tok, bos_token="<s>", eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                    pad_token="<pad>", mask_token="<mask>")
    n_vocab = tok.get_vocab_size()
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=n_vocab, n_positions=512, n_embd=hidden, n_layer=n_layer,
                                    n_head=n_head, bos_token_id=lm_tok.eos_token_id,
                                    eos_token_id=lm_tok.eos_token_id))
    loss = _train_lm(lm, lm_tok, texts, steps=lm_steps, seed=seed)
    enc = RobertaModel(RobertaConfig(vocab_size=n_vocab, hidden_size=hidden, num_hidden_layers=n_layer,
                                     num_attention_heads=n_head, intermediate_size=hidden * 4,
                                     max_position_embeddings=514, pad_token_id=enc_tok.pad_token_id,
                                     bos_token_id=enc_tok.bos_token_id, eos_token_id=enc_tok.eos_token_id))
    for model, tk, out in ((lm, lm_tok, lm_dir), (enc, enc_tok, encoder_dir)):
        out = Path(out)
        if out.exists():
            shutil.rmtree(out)
        model.save_pretrained(out)
        tk.save_pretrained(out)
    return {"vocab_size": n_vocab, "hidden": hidden, "n_layer": n_layer, "lm_steps": lm_steps,
            "lm_final_loss": loss}


def build_toy_gpt2(texts: list[str], out_dir, *, vocab_size: int = 2000, hidden: int = 64, n_layer: int = 2,
                   n_head: int = 4, lm_steps: int = 300, seed: int = 0) -> dict:
    """A tokenizer and a tiny GPT-2 trained on ``texts`` alone (the emotion classifier's base in the toy run:
    it must not depend on the processed data, which the emotion labels feed)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = _wrap(train_tokenizer(texts, vocab_size), eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                unk_token="<unk>")
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=hidden, n_layer=n_layer,
                                    n_head=n_head, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id))
    return _train_and_save(lm, tok, texts, out_dir, lm_steps=lm_steps, seed=seed)


# The Llama-2-Chat prompt layout ([INST], <<SYS>>), so that the toy Llama goes through the chat-template path
# of the real one.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] "
    "{% if loop.first and system %}<<SYS>>\n{{ system }}\n<</SYS>>\n\n{% endif %}{{ m['content'] }} [/INST]"
    "{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}"
)


def build_toy_llama(texts: list[str], tokenizer_dir, out_dir, *, hidden: int = 64, n_layer: int = 2, n_head: int = 4,
                    lm_steps: int = 300, seed: int = 0) -> dict:
    """A tiny Llama-architecture chat model (the stand-in for Llama-2-7B-Chat) on the toy tokenizer, with
    ``<s>``/``</s>`` and a Llama-2 chat template, briefly trained on ``texts``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.bos_token, tok.eos_token, tok.unk_token = "<s>", "</s>", "<unk>"
    tok.pad_token = None
    tok.chat_template = LLAMA2_CHAT_TEMPLATE
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=n_layer, num_attention_heads=n_head, num_key_value_heads=max(1, n_head // 2),
                      max_position_embeddings=1024, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    lm = LlamaForCausalLM(cfg)
    return _train_and_save(lm, tok, texts, out_dir, lm_steps=lm_steps, seed=seed)


def _train_and_save(lm, tok, texts: list[str], out_dir, *, lm_steps: int, seed: int) -> dict:
    """Briefly train a toy LM on ``texts`` and save it with its tokenizer as a model folder."""
    loss = _train_lm(lm, tok, texts, steps=lm_steps, seed=seed)
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    lm.save_pretrained(out)
    tok.save_pretrained(out)
    cfg = lm.config
    return {"vocab_size": len(tok), "hidden": cfg.hidden_size, "n_layer": cfg.num_hidden_layers, "lm_steps": lm_steps,
            "lm_final_loss": loss}


def _train_lm(lm, tokenizer, texts: list[str], *, steps: int, seed: int, batch: int = 16, length: int = 64) -> float | None:
    """Next-token training on concatenated dialogue text: enough for the toy LM to produce words."""
    if steps <= 0:
        return None
    ids = []
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    data = torch.tensor(ids)
    n = (len(data) - 1) // length
    if n < 1:
        return None
    chunks = data[: n * length].view(n, length)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    from .lm import causal_lm_loss

    causal_lm_loss(lm).train()
    loss = None
    for _ in range(steps):
        x = chunks[torch.randint(0, n, (batch,), generator=gen)]
        loss = lm(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.eval()
    log.info("toy LM: %d steps, final loss %.3f", steps, loss.item())
    return float(loss.item())
