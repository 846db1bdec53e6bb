# RL fine-tuning of the emotion-aligned generator with the critic as reward (TRL GRPO, KL penalty to the
# supervised generator), its test responses (judged with every other system in judge.smk) and the
# supervised-vs-RL comparison.


rule rl_train:
    input:
        generator=f"{GENERATOR}/{RL_KIND}/model",
        base=base_model_files(RL_KIND) if RL_KIND else [],
        critic=f"{CRITIC}/model",
        responses=f"{GEN}/{RL_KIND}/valid_responses.jsonl",
        rec=f"{PROCESSED}/valid_rec.parquet",
    output:
        model=directory(f"{RL}/{RL_KIND}/model"),
        log=f"{RL}/{RL_KIND}/train_log.jsonl",
        metrics=f"{RL}/{RL_KIND}/metrics.json",
    params:
        # bootstrap: rl_comparison's; best_of_n: the baseline's
        section={k: v for k, v in config["rl"].items() if k not in ("bootstrap", "best_of_n")},
        gen=generation_for_inference(),
        precision=config["train"]["precision"],
        work_dir=f"{WORK}/rl/{RL_KIND}",
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/rl_train/{RL_KIND}.log",
    benchmark:
        f"{BENCH}/rl_train/{RL_KIND}.tsv"
    threads: stage_threads("rl")
    resources:
        **stage_resources("rl"),
    script:
        "../scripts/rl_train.py"


rule rl_generate:
    input:
        model=f"{RL}/{RL_KIND}/model",
        predictions=f"{REC}/{config['generation']['rec_variant']}/test_predictions.parquet",
        responses=responses_file("test"),
        rec=f"{PROCESSED}/test_rec.parquet",
        **generation_knowledge_files(),
    output:
        responses=f"{GEN}/rl_{RL_KIND}/test_responses.jsonl",
        stats=f"{GEN}/rl_{RL_KIND}/test_stats.json",
    params:
        section=generator_section(RL_KIND, training=False) if RL_KIND else {},
        gen=generation_for_inference(),
        relations=config["knowledge"]["relations"],
        precision=config["train"]["precision"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/generate_responses/rl_{RL_KIND}_test.log",
    benchmark:
        f"{BENCH}/rl_generate/{RL_KIND}_test.tsv"
    threads: stage_threads("generate")
    resources:
        **stage_resources("generate"),
    script:
        "../scripts/rl_generate.py"


rule best_of_n:
    input:
        generator=f"{GENERATOR}/{RL_KIND}/model",
        base=base_model_files(RL_KIND) if RL_KIND else [],
        critic=f"{CRITIC}/model",
        sample=f"{JUDGE}/test_sample.jsonl",
        supervised=f"{GEN}/{RL_KIND}/test_responses.jsonl",
    output:
        responses=f"{GEN}/bon_{RL_KIND}/test_responses.jsonl",
        stats=f"{GEN}/bon_{RL_KIND}/test_stats.json",
    params:
        n=config["rl"]["best_of_n"],
        temperature=config["rl"]["temperature"],  # the same sampling as RL's groups
        max_new_tokens=generator_section(RL_KIND, training=False)["max_gen_len"] if RL_KIND else 0,
        context_max_length=generator_section(RL_KIND, training=False)["context_max_length"] if RL_KIND else 0,
        reward_weights=config["rl"]["reward_weights"],
        seed=config["rl"]["seed"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/best_of_n/{RL_KIND}.log",
    benchmark:
        f"{BENCH}/best_of_n/{RL_KIND}.tsv"
    threads: stage_threads("generate")
    resources:
        **stage_resources("generate"),
    script:
        "../scripts/best_of_n.py"


rule rl_comparison:
    input:
        sample=f"{JUDGE}/test_sample.jsonl",
        supervised=f"{GEN}/{RL_KIND}/test_responses.jsonl",
        rl=f"{GEN}/rl_{RL_KIND}/test_responses.jsonl",
        bon=f"{GEN}/bon_{RL_KIND}/test_responses.jsonl",
        rl_metrics=f"{RL}/{RL_KIND}/metrics.json",
        critic=f"{CRITIC}/model",
        scores=expand(f"{JUDGE}/{{judge}}/test_scores.parquet", judge=JUDGE_NAMES),
    output:
        report(f"{TABLES}/rl_comparison.csv", caption="../report/tables.rst", category="Tables"),
    params:
        judges=JUDGE_NAMES,
        supervised_name=f"ecr_{RL_KIND}",
        rl_name=f"rl_{RL_KIND}",
        bon_name=f"bon_{RL_KIND}",
        bon_n=config["rl"]["best_of_n"],
        reward_weights=config["rl"]["reward_weights"],
        n_boot=config["rl"]["bootstrap"],
        seed=config["rl"]["seed"],
    log:
        f"{LOGS}/rl_comparison.log",
    benchmark:
        f"{BENCH}/rl_comparison.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/rl_comparison.py"
