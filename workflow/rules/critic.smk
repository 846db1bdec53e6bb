# The critic (a text encoder with one regression head per judged metric), trained on the judges' scores of
# the generators' replies on the validation split, evaluated on held-out dialogues: critic.csv.


rule critic:
    input:
        sample=f"{JUDGE}/valid_sample.jsonl",
        replies=[f for f in judged_systems("valid").values() if f],
        scores=expand(f"{JUDGE}/{{judge}}/valid_scores.parquet", judge=CRITIC_JUDGES),
        base=critic_base_files(),
    output:
        model=directory(f"{CRITIC}/model"),
        metrics=f"{CRITIC}/metrics.json",
        table=report(f"{TABLES}/critic.csv", caption="../report/tables.rst", category="Tables"),
    params:
        systems=[s for s, f in judged_systems("valid").items() if f],
        sample_systems=[s for s, f in judged_systems("valid").items() if not f],
        judges=CRITIC_JUDGES,
        model=lambda wc: config["models"]["critic"],  # a hub id is no file
        section={k: v for k, v in config["critic"].items() if k != "judges"},
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        work_dir=f"{WORK}/critic",
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/critic.log",
    benchmark:
        f"{BENCH}/critic.tsv"
    threads: stage_threads("critic")
    resources:
        **stage_resources("critic"),
    script:
        "../scripts/critic.py"
