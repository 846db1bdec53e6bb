# The prompt-encoder stages: toy models (toy run only), stage 1 per variant, the UniCRS conversation module
# and its responses u_r, stage 2 per variant with ranked predictions, Tables 1 and 3.
# Training rules keep resumable checkpoints under results/<run>/work/ (not outputs: they must survive a killed job);
# their outputs appear only when training has finished. Paths and input functions are in common.smk.

if SMALL_MODELS:

    rule toy_models:
        input:
            pretrain=f"{PROCESSED}/train_pretrain.parquet",
            rec=f"{PROCESSED}/train_rec.parquet",
        output:
            lm=f"{config['models']['plm']}/config.json",
            encoder=f"{config['models']['text_encoder']}/config.json",
            summary=f"{RESULTS}/models/summary.json",
        params:
            spec=config["toy"]["models"],
            seed=config["toy"]["seed"],
        log:
            f"{LOGS}/toy_models.log",
        benchmark:
            f"{BENCH}/toy_models.tsv"
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
        flags=lambda wc: variant_flags("pretrain", wc.variant),
        section=lambda wc: variant_section("pretrain", "pretrain", wc.variant),
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
    priority: CRITICAL_PATH
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
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/conversation_generate.log",
    benchmark:
        f"{BENCH}/conversation_generate.tsv"
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
        flags=lambda wc: variant_flags("recommend", wc.variant),
        section=lambda wc: variant_section("recommend", "recommend", wc.variant, "top_k"),
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
        flags=lambda wc: variant_flags("recommend", wc.variant),
        section=lambda wc: variant_section("recommend", "recommend", wc.variant),
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        models=FROZEN,
    log:
        f"{LOGS}/recommend_predict/{{variant}}.log",
    benchmark:
        f"{BENCH}/recommend_predict/{{variant}}.tsv"
    threads: stage_threads("predict")
    resources:
        **stage_resources("predict"),
    script:
        "../scripts/recommend_predict.py"


rule rec_table:
    input:
        predictions=lambda wc: [path for _, _, path in table_runs(wc.table)],
        fingerprint=[f"{PROCESSED}/test_rec.parquet", f"{PROCESSED}/train_rec.parquet", f"{KG}/kg.safetensors"],
    output:
        table=report(f"{TABLES}/{{table}}.csv", caption="../report/tables.rst", category="Tables"),
        provenance=f"{TABLES}/{{table}}.provenance.json",
    wildcard_constraints:
        table="table1|table3",
    params:
        variants=lambda wc: [v for v, _, _ in table_runs(wc.table)],
        seeds=lambda wc: [s for _, s, _ in table_runs(wc.table)] if MULTI_SEED else None,
        ks=config["evaluation"]["ks"],
        auc_batch_size=config["evaluation"]["auc_batch_size"],
    log:
        f"{LOGS}/{{table}}.log",
    benchmark:
        f"{BENCH}/rec_table/{{table}}.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/rec_table.py"


if MULTI_SEED:
    # The same stages once per seed of tables.seeds (stage 1 and stage 2 both take the seed), for the seed
    # rows of Tables 1 and 3.

    use rule pretrain as pretrain_seed with:
        output:
            model=f"{PRE}/{{variant}}/seed{{seed}}/model.safetensors",
            metrics=f"{PRE}/{{variant}}/seed{{seed}}/metrics.json",
        wildcard_constraints:
            variant=PRE_VARIANTS,
            seed=r"\d+",
        params:
            flags=lambda wc: variant_flags("pretrain", wc.variant),
            section=lambda wc: variant_section("pretrain", "pretrain", wc.variant, seed=wc.seed),
            precision=config["train"]["precision"],
            models=FROZEN,
            leave_dialog_out=lambda wc: leave_dialog_out(pre_flags(wc)),
            work_dir=lambda wc: f"{WORK}/pretrain/{wc.variant}/seed{wc.seed}",
        log:
            f"{LOGS}/pretrain/{{variant}}/seed{{seed}}.log",
        benchmark:
            f"{BENCH}/pretrain/{{variant}}/seed{{seed}}.tsv"

    use rule recommend_train as recommend_train_seed with:
        input:
            unpack(lambda wc: rec_responses("train", "valid")),
            unpack(lambda wc: cooccurrence_inputs(rec_flags(wc))),
            train=f"{PROCESSED}/train_rec.parquet",
            valid=f"{PROCESSED}/valid_rec.parquet",
            kg=f"{KG}/kg.safetensors",
            item_ids=f"{DATA}/item_ids.json",
            init=lambda wc: f"{PRE}/{config['variants']['recommend'][wc.variant]['pretrain']}/seed{wc.seed}/model.safetensors",
            models=frozen_model_files(),
        output:
            model=f"{REC}/{{variant}}/seed{{seed}}/model.safetensors",
            metrics=f"{REC}/{{variant}}/seed{{seed}}/train_metrics.json",
        wildcard_constraints:
            variant=REC_VARIANTS,
            seed=r"\d+",
        params:
            flags=lambda wc: variant_flags("recommend", wc.variant),
            section=lambda wc: variant_section("recommend", "recommend", wc.variant, "top_k", seed=wc.seed),
            precision=config["train"]["precision"],
            models=FROZEN,
            leave_dialog_out=lambda wc: leave_dialog_out(rec_flags(wc)),
            work_dir=lambda wc: f"{WORK}/recommend/{wc.variant}/seed{wc.seed}",
        log:
            f"{LOGS}/recommend_train/{{variant}}/seed{{seed}}.log",
        benchmark:
            f"{BENCH}/recommend_train/{{variant}}/seed{{seed}}.tsv"

    use rule recommend_predict as recommend_predict_seed with:
        input:
            unpack(lambda wc: rec_responses(*EVAL_SPLITS)),
            unpack(lambda wc: cooccurrence_inputs(rec_flags(wc))),
            valid=f"{PROCESSED}/valid_rec.parquet",
            test=f"{PROCESSED}/test_rec.parquet",
            kg=f"{KG}/kg.safetensors",
            item_ids=f"{DATA}/item_ids.json",
            model=f"{REC}/{{variant}}/seed{{seed}}/model.safetensors",
            models=frozen_model_files(),
        output:
            valid=f"{REC}/{{variant}}/seed{{seed}}/valid_predictions.parquet",
            test=f"{REC}/{{variant}}/seed{{seed}}/test_predictions.parquet",
        wildcard_constraints:
            variant=REC_VARIANTS,
            seed=r"\d+",
        params:
            flags=lambda wc: variant_flags("recommend", wc.variant),
            section=lambda wc: variant_section("recommend", "recommend", wc.variant, seed=wc.seed),
            precision=config["train"]["precision"],
            models=FROZEN,
        log:
            f"{LOGS}/recommend_predict/{{variant}}/seed{{seed}}.log",
        benchmark:
            f"{BENCH}/recommend_predict/{{variant}}/seed{{seed}}.tsv"
