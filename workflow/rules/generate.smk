# The emotion-aligned generator: review knowledge and filtering, first-sentence templates, the generators
# (DialoGPT full fine-tuning, Llama-2-Chat LoRA), responses for the test turns, objective metrics.
# Paths and input functions are in common.smk.

# (Not when models.generator_llama is a real model converted by models.smk: config/real_models.yaml.)
if SMALL_MODELS and str(Path(config["models"]["generator_llama"])) not in CONVERTED_MODELS:

    rule toy_llama:
        input:
            pretrain=f"{PROCESSED}/train_pretrain.parquet",
            tokenizer=f"{config['models']['plm']}/config.json",
        output:
            f"{config['models']['generator_llama']}/config.json",
        params:
            spec=config["toy"]["models"],
            seed=config["toy"]["seed"],
        log:
            f"{LOGS}/toy_llama.log",
        benchmark:
            f"{BENCH}/toy_llama.tsv"
        resources:
            **stage_resources("default"),
        script:
            "../scripts/toy_llama.py"


rule dialogue_corpus:
    input:
        train_rec=f"{PROCESSED}/train_rec.parquet",
        valid_rec=f"{PROCESSED}/valid_rec.parquet",
        train_responses=responses_file("train"),
        valid_responses=responses_file("valid"),
        items_table=f"{DATA}/items.parquet",
        relation2id=raw_file("relation2id.json"),
        subkg=raw_file("dbpedia_subkg.json"),
    output:
        train=f"{DIALOGUE_CORPUS}/train.parquet",
        valid=f"{DIALOGUE_CORPUS}/valid.parquet",
        movies=f"{DIALOGUE_CORPUS}/movie_knowledge.parquet",
        report=f"{DIALOGUE_CORPUS}/report.json",
    params:
        relations=config["knowledge"]["relations"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/dialogue_corpus.log",
    benchmark:
        f"{BENCH}/dialogue_corpus.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/dialogue_corpus.py"


rule review_knowledge:
    input:
        reviews=raw_file(config["data"]["reviews"] or "data.reviews-is-null"),
        entity2id=raw_file("entity2id.json"),
        relation2id=raw_file("relation2id.json"),
        subkg=raw_file("dbpedia_subkg.json"),
        items_table=f"{DATA}/items.parquet",
        validation=f"{DATA}/validation.json",
    output:
        reviews=f"{REVIEWS}/annotated.parquet",
        movies=f"{REVIEWS}/movie_knowledge.parquet",
        report=f"{REVIEWS}/knowledge_report.json",
    params:
        knowledge=config["knowledge"],
    log:
        f"{LOGS}/review_knowledge.log",
    benchmark:
        f"{BENCH}/review_knowledge.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/review_knowledge.py"


rule filter_reviews:
    input:
        f"{REVIEWS}/annotated.parquet",
    output:
        train=f"{REVIEWS}/{{profile}}_train.parquet",
        valid=f"{REVIEWS}/{{profile}}_valid.parquet",
        report=f"{REVIEWS}/{{profile}}_report.json",
    wildcard_constraints:
        profile=PROFILES,
    params:
        profile=lambda wc: config["reviews"]["profiles"][wc.profile],
        options={k: v for k, v in config["reviews"].items() if k != "profiles"},
    log:
        f"{LOGS}/filter_reviews/{{profile}}.log",
    benchmark:
        f"{BENCH}/filter_reviews/{{profile}}.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/filter_reviews.py"


rule first_sentence_templates:
    input:
        responses_file("train"),
    output:
        f"{GEN}/templates.json",
    params:
        n=config["generation"]["n_templates"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/first_sentence_templates.log",
    benchmark:
        f"{BENCH}/first_sentence_templates.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/first_sentence_templates.py"


# One training rule per kind, so that each gets its own resources (a 7B Llama needs another GPU than
# DialoGPT-small): generator_train_dialogpt, generator_train_llama.
for _kind in config["generator"]:

    rule:
        name:
            f"generator_train_{_kind}"
        input:
            **generator_train_inputs(_kind),
        output:
            model=directory(f"{GENERATOR}/{_kind}/model"),
            metrics=f"{GENERATOR}/{_kind}/metrics.json",
        params:
            kind=_kind,
            base_model=lambda wc, k=_kind: config["models"][f"generator_{k}"],  # a hub id is no file
            section=generator_section(_kind, training=True),
            gen=generation_for_training(),
            precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
            work_dir=f"{WORK}/generator/{_kind}",
        priority: CRITICAL_PATH
        log:
            f"{LOGS}/generator_train/{_kind}.log",
        benchmark:
            f"{BENCH}/generator_train/{_kind}.tsv"
        threads: stage_threads(f"generator_{_kind}")
        resources:
            **stage_resources(f"generator_{_kind}"),
        script:
            "../scripts/generator_train.py"


rule generate_responses:
    input:
        model=f"{GENERATOR}/{{kind}}/model",
        base=lambda wc: base_model_files(wc.kind),
        predictions=lambda wc: f"{REC}/{config['generation']['rec_variant']}/{wc.split}_predictions.parquet",
        responses=lambda wc: responses_file(wc.split),
        rec=f"{PROCESSED}/{{split}}_rec.parquet",
        **generation_knowledge_files(),
    output:
        responses=f"{GEN}/{{kind}}/{{split}}_responses.jsonl",
        stats=f"{GEN}/{{kind}}/{{split}}_stats.json",
    wildcard_constraints:
        kind=KINDS,
        split="valid|test",  # valid: the critic's and the RL stage's contexts; test: the tables
    params:
        section=lambda wc: generator_section(wc.kind, training=False),
        gen=generation_for_inference(),
        relations=config["knowledge"]["relations"],
        precision=config["train"]["precision"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/generate_responses/{{kind}}_{{split}}.log",
    benchmark:
        f"{BENCH}/generate_responses/{{kind}}_{{split}}.tsv"
    threads: stage_threads("generate")
    resources:
        **stage_resources("generate"),
    script:
        "../scripts/generate_responses.py"


rule generation_objective:
    input:
        expand(f"{GEN}/{{kind}}/test_responses.jsonl", kind=config["generation"]["kinds"]),
    output:
        report(f"{TABLES}/generation_objective.csv", caption="../report/tables.rst", category="Tables"),
    params:
        kinds=config["generation"]["kinds"],
    log:
        f"{LOGS}/generation_objective.log",
    benchmark:
        f"{BENCH}/generation_objective.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/generation_objective.py"
