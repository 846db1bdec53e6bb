# Result tables (CSV under results/<run>/tables/).


rule dataset_stats:
    input:
        validation=f"{DATA}/validation.json",
        split_stats=expand(f"{PROCESSED}/{{split}}_stats.json", split=SPLITS),
        kg_meta=f"{KG}/kg_meta.json",
        items_table=f"{DATA}/items.parquet",
    output:
        report(f"{TABLES}/dataset_stats.csv", caption="../report/tables.rst", category="Tables"),
    log:
        f"{LOGS}/dataset_stats.log",
    benchmark:
        f"{BENCH}/dataset_stats.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/dataset_stats.py"


rule baselines:
    input:
        train_rec=f"{PROCESSED}/train_rec.parquet",
        test_rec=f"{PROCESSED}/test_rec.parquet",
        item_ids=f"{DATA}/item_ids.json",
        matrix=f"{KG}/cooccurrence.npz",
        contributions=f"{KG}/cooccurrence_dialogs.parquet",
        kg=f"{KG}/kg.safetensors",
    output:
        report(f"{TABLES}/baselines.csv", caption="../report/tables.rst", category="Tables"),
    params:
        ks=config["evaluation"]["ks"],
    log:
        f"{LOGS}/baselines.log",
    benchmark:
        f"{BENCH}/baselines.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/baselines.py"
