# The knowledge graph as RGCN tensors, and the emotion-filtered co-occurrence ("global entities").


rule kg_tensors:
    input:
        entity2id=raw_file("entity2id.json"),
        relation2id=raw_file("relation2id.json"),
        subkg=raw_file("dbpedia_subkg.json"),
        validation=f"{DATA}/validation.json",
    output:
        tensors=f"{KG}/kg.safetensors",
        meta=f"{KG}/kg_meta.json",
        entity2id=f"{KG}/entity2id.json",
        relation2id=f"{KG}/relation2id.json",
    params:
        reverse_edges=config["kg"]["reverse"],
    log:
        f"{LOGS}/kg_tensors.log",
    benchmark:
        f"{BENCH}/kg_tensors.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/kg_tensors.py"


rule cooccurrence:
    input:
        sequences=f"{PROCESSED}/train_sequences.parquet",
        entity2id=raw_file("entity2id.json"),
    output:
        matrix=f"{KG}/cooccurrence.npz",
        contributions=f"{KG}/cooccurrence_dialogs.parquet",
        stats=f"{KG}/cooccurrence_stats.json",
    params:
        top_n=config["cooccurrence"]["top_n_labels"],
        # Dialogues without emotion labels count every pair (the emotion filter would leave the table empty).
        emotion_filter=config["data"]["emotions"] != "none",
    log:
        f"{LOGS}/cooccurrence.log",
    benchmark:
        f"{BENCH}/cooccurrence.tsv"
    resources:
        **stage_resources("cooccurrence"),
    script:
        "../scripts/cooccurrence.py"
