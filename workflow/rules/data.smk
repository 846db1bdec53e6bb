# Raw input (toy generator or the real release), its validation, and the processed samples.

if TOY_DATA:

    rule toy_data:
        output:
            raw_files(),
        params:
            toy=config["toy"],
            dialog_pattern=lambda wc: config["data"]["dialog_pattern"],  # a function: {split} is no wildcard
            reviews=config["data"]["reviews"],
            with_emotions=REQUIRE_EMOTION,
        log:
            f"{LOGS}/toy_data.log",
        benchmark:
            f"{BENCH}/toy_data.tsv"
        resources:
            **stage_resources("default"),
        script:
            "../scripts/toy_data.py"


rule validate_input:
    input:
        raw_files(),
    output:
        f"{DATA}/validation.json",
    params:
        raw_dir=lambda wc, input: Path(input[0]).parent,
        dialog_pattern=lambda wc: config["data"]["dialog_pattern"],  # a function: {split} is no wildcard
        require_emotion=REQUIRE_EMOTION,
        unknown_entities=config["data"]["unknown_entities"],
        split_overlap=config["data"]["split_overlap"],
        reviews=config["data"]["reviews"],
    log:
        f"{LOGS}/validate_input.log",
    benchmark:
        f"{BENCH}/validate_input.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/validate_input.py"


rule process_split:
    input:
        dialogs=lambda wc: processing_dialogs(wc.split),
        entity2id=raw_file("entity2id.json"),
        validation=f"{DATA}/validation.json",
    output:
        pretrain=f"{PROCESSED}/{{split}}_pretrain.parquet",
        rec=f"{PROCESSED}/{{split}}_rec.parquet",
        sequences=f"{PROCESSED}/{{split}}_sequences.parquet",
        stats=f"{PROCESSED}/{{split}}_stats.json",
    params:
        emotion=config["emotion"],
        require_emotion=REQUIRE_EMOTION or LABELLED,
        emotions=config["data"]["emotions"],  # names the setting in errors
    wildcard_constraints:
        split="|".join(SPLITS),
    log:
        f"{LOGS}/process_split/{{split}}.log",
    benchmark:
        f"{BENCH}/process_split/{{split}}.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/process_split.py"


rule items:
    input:
        sequences=expand(f"{PROCESSED}/{{split}}_sequences.parquet", split=SPLITS),
        train_rec=f"{PROCESSED}/train_rec.parquet",
        entity2id=raw_file("entity2id.json"),
    output:
        item_ids=f"{DATA}/item_ids.json",
        items_table=f"{DATA}/items.parquet",
    log:
        f"{LOGS}/items.log",
    benchmark:
        f"{BENCH}/items.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/items.py"


if config["data"]["unicrs_responses"]:

    rule unicrs_responses:
        input:
            responses=lambda wc: raw_file(config["data"]["unicrs_responses"].format(split=wc.split)),
            rec=f"{PROCESSED}/{{split}}_rec.parquet",
        output:
            responses=f"{PROCESSED}/{{split}}_unicrs_responses.parquet",
            stats=f"{PROCESSED}/{{split}}_unicrs_responses.json",
        wildcard_constraints:
            split="|".join(SPLITS),
        log:
            f"{LOGS}/unicrs_responses/{{split}}.log",
        benchmark:
            f"{BENCH}/unicrs_responses/{{split}}.tsv"
        resources:
            **stage_resources("default"),
        script:
            "../scripts/unicrs_responses.py"
