# The prompt-encoder stages: toy models (toy run only), stage 1 per variant, the UniCRS conversation module
# and its responses u_r, stage 2 per variant with ranked predictions, Tables 1 and 3.
# Training rules keep resumable checkpoints under results/work/ (not outputs: they must survive a killed job);
# their outputs appear only when training has finished.

PRE = "results/pretrain"
CONV = "results/conversation"
REC = "results/recommend"
WORK = "results/work"
EVAL_SPLITS = ("valid", "test")
PRE_VARIANTS = "|".join(config["variants"]["pretrain"])
REC_VARIANTS = "|".join(config["variants"]["recommend"])
FROZEN = {k: config["models"][k] for k in ("plm", "text_encoder")}


def frozen_model_files():
    """The local model folders as inputs (built by toy_models in the toy run); hub ids are not files."""
    files = []
    for name in FROZEN.values():
        if config["toy"]["enabled"] or Path(name).is_dir():
            files.append(f"{name}/config.json")
    return files


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


if config["toy"]["enabled"]:

    rule toy_models:
        input:
            pretrain=f"{PROCESSED}/train_pretrain.parquet",
            rec=f"{PROCESSED}/train_rec.parquet",
        output:
            lm=f"{config['models']['plm']}/config.json",
            encoder=f"{config['models']['text_encoder']}/config.json",
            summary="results/toy/models/summary.json",
        params:
            spec=config["toy"]["models"],
            seed=config["toy"]["seed"],
        log:
            f"{LOGS}/toy_models.log",
        resources:
            **stage_resources("default"),
        script:
            "../scripts/toy_models.py"


rule pretrain:
    input:
        unpack(lambda wc: cooccurrence_inputs(pre_flags(wc))),
        train=f"{PROCESSED}/train_pretrain.parquet",
        valid=f"{PROCESSED}/valid_pretrain.parquet",
        kg=f"{KG}/kg.safetensors",
        models=frozen_model_files(),
    output:
        model=f"{PRE}/{{variant}}/model.safetensors",
        metrics=f"{PRE}/{{variant}}/metrics.json",
    wildcard_constraints:
        variant=PRE_VARIANTS,
    params:
        flags=pre_flags,
        section=config["pretrain"],
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
        leave_dialog_out=lambda wc: leave_dialog_out(pre_flags(wc)),
        work_dir=lambda wc: f"{WORK}/pretrain/{wc.variant}",
    log:
        f"{LOGS}/pretrain/{{variant}}.log",
    benchmark:
        f"{BENCH}/pretrain/{{variant}}.tsv"
    threads: stage_threads("pretrain")
    resources:
        **stage_resources("pretrain"),
    script:
        "../scripts/pretrain.py"


rule conversation_train:
    input:
        train=f"{PROCESSED}/train_rec.parquet",
        valid=f"{PROCESSED}/valid_rec.parquet",
        kg=f"{KG}/kg.safetensors",
        init=f"{PRE}/unicrs/model.safetensors",
        models=frozen_model_files(),
    output:
        model=f"{CONV}/model.safetensors",
        metrics=f"{CONV}/metrics.json",
    params:
        section=section_for_training("conversation", "max_gen_len", "no_repeat_ngram_size", "gen_batch_size"),
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
        work_dir=f"{WORK}/conversation",
    log:
        f"{LOGS}/conversation_train.log",
    benchmark:
        f"{BENCH}/conversation_train.tsv"
    threads: stage_threads("conversation")
    resources:
        **stage_resources("conversation"),
    script:
        "../scripts/conversation_train.py"


rule conversation_generate:
    input:
        rec=expand(f"{PROCESSED}/{{split}}_rec.parquet", split=SPLITS),
        kg=f"{KG}/kg.safetensors",
        model=f"{CONV}/model.safetensors",
        models=frozen_model_files(),
    output:
        expand(f"{CONV}/{{split}}_responses.parquet", split=SPLITS),
    params:
        section=config["conversation"],
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
        splits=SPLITS,
    log:
        f"{LOGS}/conversation_generate.log",
    threads: stage_threads("predict")
    resources:
        **stage_resources("predict"),
    script:
        "../scripts/conversation_generate.py"


rule recommend_train:
    input:
        unpack(lambda wc: rec_responses("train", "valid")),
        unpack(lambda wc: cooccurrence_inputs(rec_flags(wc))),
        train=f"{PROCESSED}/train_rec.parquet",
        valid=f"{PROCESSED}/valid_rec.parquet",
        kg=f"{KG}/kg.safetensors",
        item_ids=f"{DATA}/item_ids.json",
        init=lambda wc: f"{PRE}/{config['variants']['recommend'][wc.variant]['pretrain']}/model.safetensors",
        models=frozen_model_files(),
    output:
        model=f"{REC}/{{variant}}/model.safetensors",
        metrics=f"{REC}/{{variant}}/train_metrics.json",
    wildcard_constraints:
        variant=REC_VARIANTS,
    params:
        flags=rec_flags,
        section=section_for_training("recommend", "top_k"),
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
        leave_dialog_out=lambda wc: leave_dialog_out(rec_flags(wc)),
        work_dir=lambda wc: f"{WORK}/recommend/{wc.variant}",
    log:
        f"{LOGS}/recommend_train/{{variant}}.log",
    benchmark:
        f"{BENCH}/recommend_train/{{variant}}.tsv"
    threads: stage_threads("recommend")
    resources:
        **stage_resources("recommend"),
    script:
        "../scripts/recommend_train.py"


rule recommend_predict:
    input:
        unpack(lambda wc: rec_responses(*EVAL_SPLITS)),
        unpack(lambda wc: cooccurrence_inputs(rec_flags(wc))),
        valid=f"{PROCESSED}/valid_rec.parquet",
        test=f"{PROCESSED}/test_rec.parquet",
        kg=f"{KG}/kg.safetensors",
        item_ids=f"{DATA}/item_ids.json",
        model=f"{REC}/{{variant}}/model.safetensors",
        models=frozen_model_files(),
    output:
        valid=f"{REC}/{{variant}}/valid_predictions.parquet",
        test=f"{REC}/{{variant}}/test_predictions.parquet",
    wildcard_constraints:
        variant=REC_VARIANTS,
    params:
        flags=rec_flags,
        section=config["recommend"],
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
    log:
        f"{LOGS}/recommend_predict/{{variant}}.log",
    threads: stage_threads("predict")
    resources:
        **stage_resources("predict"),
    script:
        "../scripts/recommend_predict.py"


rule rec_table:
    input:
        predictions=lambda wc: [f"{REC}/{v}/test_predictions.parquet" for v in config["tables"][wc.table]],
        fingerprint=[f"{PROCESSED}/test_rec.parquet", f"{PROCESSED}/train_rec.parquet", f"{KG}/kg.safetensors"],
    output:
        table=f"{TABLES}/{{table}}.csv",
        provenance=f"{TABLES}/{{table}}.provenance.json",
    wildcard_constraints:
        table="table1|table3",
    params:
        variants=lambda wc: config["tables"][wc.table],
        ks=config["evaluation"]["ks"],
        auc_batch_size=config["evaluation"]["auc_batch_size"],
    log:
        f"{LOGS}/{{table}}.log",
    resources:
        **stage_resources("default"),
    script:
        "../scripts/rec_table.py"
