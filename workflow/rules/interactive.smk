# Talking to the trained systems: the manifest `ecrflow chat` and `ecrflow serve` load, the entity linker's
# scores on the real messages, and the evaluation in conversation with a simulated seeker (docs/interactive.md).


rule chat_system:
    input:
        lambda wc: chat_system_files(wc.system),
    output:
        f"{INTERACTIVE}/systems/{{system}}.json",
    wildcard_constraints:
        system="unicrs|ecr|ecr_rl",
    params:
        manifest=lambda wc: chat_manifest([wc.system]),
    log:
        f"{LOGS}/chat_system/{{system}}.log",
    resources:
        **stage_resources("default"),
    script:
        "../scripts/chat_system.py"


# All of the run's systems in one manifest: what `ecrflow chat` and `ecrflow serve` load.
rule chat_systems:
    input:
        [f"{INTERACTIVE}/systems/{s}.json" for s in CHAT_SYSTEMS],
    output:
        f"{INTERACTIVE}/system.json",
    log:
        f"{LOGS}/chat_systems.log",
    resources:
        **stage_resources("default"),
    script:
        "../scripts/chat_systems.py"


rule entity_linking:
    input:
        entity2id=raw_file("entity2id.json"),
        items_table=f"{DATA}/items.parquet",
        dialogs=[dialog_file(s) for s in EVAL_SPLITS],
    output:
        report(f"{TABLES}/linking.csv", caption="../report/interactive.rst", category="Interactive"),
    params:
        splits=EVAL_SPLITS,
    log:
        f"{LOGS}/entity_linking.log",
    benchmark:
        f"{BENCH}/entity_linking.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/entity_linking.py"


rule interactive_eval:
    input:
        unpack(lambda wc: interactive_inputs(wc.system)),
        entity2id=raw_file("entity2id.json"),
        items_table=f"{DATA}/items.parquet",
        item_ids=f"{DATA}/item_ids.json",
        dialogs=dialog_file("test"),
    output:
        dialogues=f"{INTERACTIVE}/{{mode}}/{{system}}.jsonl",
        summary=f"{INTERACTIVE}/{{mode}}/{{system}}.json",
    wildcard_constraints:
        mode="target_given|target_free",
        system="unicrs|ecr|ecr_rl|llm",
    params:
        settings=interactive_settings(),
        seeker=config["interactive"]["seeker"],
        recommender_llm=lambda wc: config["interactive"]["recommender_llm"] if wc.system == "llm" else None,
        cache_dir=lambda wc: f"{WORK}/llm_cache/interactive/{wc.mode}/{wc.system}",  # resumable; not an output
    log:
        f"{LOGS}/interactive_eval/{{mode}}_{{system}}.log",
    benchmark:
        f"{BENCH}/interactive_eval/{{mode}}_{{system}}.tsv"
    threads: stage_threads("generate")
    resources:
        **stage_resources("generate"),
    script:
        "../scripts/interactive_eval.py"


rule interactive_table:
    input:
        summaries=[f"{INTERACTIVE}/{m}/{s}.json" for m, s in interactive_runs()],
        dialogues=[f"{INTERACTIVE}/{m}/{s}.jsonl" for m, s in interactive_runs()],
    output:
        table=report(f"{TABLES}/interactive.csv", caption="../report/interactive.rst", category="Interactive"),
        page=report(f"{REPORT}/interactive_dialogues.html", caption="../report/interactive.rst",
                    category="Interactive"),
    params:
        per_system=config["interactive"]["report_dialogues"],
    log:
        f"{LOGS}/interactive_table.log",
    resources:
        **stage_resources("default"),
    script:
        "../scripts/interactive_table.py"
