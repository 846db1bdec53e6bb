"""The frozen language model and text encoder, and prefix injection through the model's ``cache`` argument
(named ``past_key_values`` before transformers 5.24).

Any Hugging Face causal LM works (DialoGPT-small in the paper run, a tiny GPT-2 built by the toy run): the
prompt encoder's per-layer key/value prefixes are handed to the unmodified model as a ``DynamicCache``, the
attention mask is extended over the prefix, and position ids start at 0 after it, as the reference's
patched GPT-2 did (ECR_SPEC 4.1). No model class is copied or changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..constants import MOVIE_TOKEN
from .prompt import Prefix

PAD_TOKEN = "<pad>"


@dataclass
class FrozenModels:
    lm: nn.Module  # causal LM with its head (the conversation module generates)
    lm_tokenizer: object
    encoder: nn.Module
    encoder_tokenizer: object

    @property
    def lm_shape(self) -> dict:
        return lm_shape(self.lm.config)


def lm_shape(config) -> dict:
    """Hidden size, layers, key/value heads and head size of a causal LM config (GPT-2 and Llama names)."""
    hidden = getattr(config, "hidden_size", None) or config.n_embd
    n_layer = getattr(config, "num_hidden_layers", None) or config.n_layer
    n_head = getattr(config, "num_attention_heads", None) or config.n_head
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    head_dim = getattr(config, "head_dim", None) or hidden // n_head
    return {"hidden": hidden, "n_layer": n_layer, "n_kv_head": n_kv, "head_dim": head_dim}


def prepare_tokenizer(tokenizer):
    """Add ``<pad>`` and ``<movie>`` as special tokens (the reference does the same to both models)."""
    extra = {}
    if tokenizer.pad_token is None:
        extra["pad_token"] = PAD_TOKEN
    if MOVIE_TOKEN not in tokenizer.get_vocab():
        extra["additional_special_tokens"] = [MOVIE_TOKEN]
    if extra:
        tokenizer.add_special_tokens(extra)
    return unbounded(tokenizer)


def causal_lm_loss(model):
    """Name the loss of a causal LM whose class transformers cannot map to one (GPT2LMHeadModel, DialoGPT's):
    it then computes the same shifted cross-entropy without warning that it guessed."""
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"
    return model


def unbounded(tokenizer):
    """No length warning from the tokenizer: this project encodes whole texts and cuts every sequence itself
    (a context's end, a response's start) to the configured maximum, so a text longer than the model's
    window is never fed whole, and the warning ("Token indices sequence length is longer ...") would only
    fill the logs."""
    tokenizer.model_max_length = int(1e30)
    return tokenizer


def _freeze(model: nn.Module) -> nn.Module:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_frozen(lm_name: str, encoder_name: str, dtype=None, *, lm_key: str = "models.plm",
                encoder_key: str = "models.text_encoder") -> FrozenModels:
    """Load the language model and the text encoder by hub id or local directory, frozen, in eval mode,
    with embeddings resized for the added tokens. ``dtype`` (bf16 when training in bf16) halves their
    memory: they are never updated, so nothing needs their fp32 copy. A name that cannot be loaded fails
    naming its config key (``lm_key``, ``encoder_key``).

    Any causal LM and any encoder fit: GPT-2 or Llama with grouped-query attention (the prefix is shaped by
    :func:`lm_shape`), RoBERTa or BERT (token_type_ids default to the single segment 0)."""
    from .loading import load_pretrained

    lm_tok = prepare_tokenizer(load_pretrained("tokenizer", lm_name, lm_key))
    lm = load_pretrained("causal_lm", lm_name, lm_key)
    if len(lm_tok) > lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(lm_tok))
    enc_tok = prepare_tokenizer(load_pretrained("tokenizer", encoder_name, encoder_key))
    enc = load_pretrained("encoder", encoder_name, encoder_key)
    if len(enc_tok) > enc.get_input_embeddings().num_embeddings:
        enc.resize_token_embeddings(len(enc_tok))
    if dtype is not None:
        lm, enc = lm.to(dtype), enc.to(dtype)
    return FrozenModels(_freeze(lm), lm_tok, _freeze(enc), enc_tok)


def prefix_cache(prefix: Prefix):
    """A fresh ``DynamicCache`` holding the prefix keys/values of every layer (it is extended in place by
    the forward pass, so build one per call)."""
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(prefix.key[i], prefix.value[i]) for i in range(prefix.key.shape[0])])


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only (0 for left padding), independent of the prefix."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def prefixed_forward(model: nn.Module, prefix: Prefix, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     **kwargs):
    """One forward pass of ``model`` (a causal LM or its base model) over ``input_ids`` with the prefix in
    front of every layer's keys and values."""
    full_mask = torch.cat([prefix.mask.to(attention_mask.dtype), attention_mask], dim=1)
    return model(input_ids=input_ids, attention_mask=full_mask, cache=prefix_cache(prefix),
                 position_ids=positions(attention_mask), use_cache=True, **kwargs)


def last_hidden(lm: nn.Module, prefix: Prefix, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Final-layer hidden state at each row's last real token (right padding), B x d."""
    out = prefixed_forward(lm.base_model, prefix, input_ids, attention_mask)
    last = attention_mask.long().sum(1) - 1
    return out.last_hidden_state[torch.arange(len(last), device=last.device), last]


def ban_repeated_ngrams(logits: torch.Tensor, generated: list[list[int]], n: int) -> None:
    """Set to -inf every token that would repeat an n-gram already in the row (``no_repeat_ngram_size``)."""
    if n <= 0:
        return
    for row, seq in enumerate(generated):
        if len(seq) < n - 1:
            continue
        prefix = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
        banned = [seq[i + n - 1] for i in range(len(seq) - n + 1) if tuple(seq[i:i + n - 1]) == prefix]
        if banned:
            logits[row, banned] = float("-inf")


@torch.no_grad()
def greedy_generate(lm: nn.Module, prefix: Prefix, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                    max_new_tokens: int, eos_token_id: int, no_repeat_ngram_size: int = 3) -> list[list[int]]:
    """Greedy decoding with the prefix and the KV cache, batched over left-padded inputs; returns the new
    tokens of each row, up to (not including) the end-of-sequence token."""
    b = input_ids.shape[0]
    history = [row[m.bool()].tolist() for row, m in zip(input_ids, attention_mask)]
    out: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=input_ids.device)
    full_mask = torch.cat([prefix.mask.to(attention_mask.dtype), attention_mask], dim=1)
    pos = positions(attention_mask)
    step = lm(input_ids=input_ids, attention_mask=full_mask, cache=prefix_cache(prefix),
              position_ids=pos, use_cache=True)
    cache = step.cache
    next_pos = pos[:, -1:] + 1
    for _ in range(max_new_tokens):
        logits = step.logits[:, -1, :].float()
        ban_repeated_ngrams(logits, [h + o for h, o in zip(history, out)], no_repeat_ngram_size)
        token = logits.argmax(-1)
        for i in range(b):
            if not done[i]:
                if token[i].item() == eos_token_id:
                    done[i] = True
                else:
                    out[i].append(token[i].item())
        if bool(done.all()):
            break
        token = torch.where(done, torch.full_like(token, eos_token_id), token)
        full_mask = torch.cat([full_mask, (~done).to(full_mask.dtype)[:, None]], dim=1)
        step = lm(input_ids=token[:, None], attention_mask=full_mask, cache=cache,
                  position_ids=next_pos, use_cache=True)
        cache = step.cache
        next_pos = next_pos + 1
    return out
