# Emotion labels made by the pipeline (data.emotions: pipeline, paper App. A.1): LLM annotation of a sample
# of seeker utterances, the focal-loss classifier, and every split's dialogues labelled in the ECR format.
# process_split then reads the labelled files (common.smk: processing_dialogs).

if SMALL_MODELS:

    rule toy_emotion_lm:
        input:
            lambda wc: dialog_file(config["emotion_labels"]["split"]),
        output:
            f"{config['models']['emotion_classifier']}/config.json",
        params:
            spec=config["toy"]["models"],
            seed=config["toy"]["seed"],
        log:
            f"{LOGS}/toy_emotion_lm.log",
        benchmark:
            f"{BENCH}/toy_emotion_lm.tsv"
        resources:
            **stage_resources("default"),
        script:
            "../scripts/toy_emotion_lm.py"


rule emotion_annotate:
    input:
        dialogs=lambda wc: dialog_file(config["emotion_labels"]["split"]),
        validation=f"{DATA}/validation.json",
        model=llm_model_inputs(config["emotion_labels"]["llm"]),
    output:
        annotations=f"{EMO}/annotations.jsonl",
        summary=f"{EMO}/annotation_summary.json",
    params:
        options=config["emotion_labels"],
        # resumable answers; not an output, so it outlives a failed job and a rerun sends only what is missing
        cache_dir=f"{WORK}/llm_cache/emotion_annotate",
    log:
        f"{LOGS}/emotion_annotate.log",
    benchmark:
        f"{BENCH}/emotion_annotate.tsv"
    threads: stage_threads("emotion_annotate")
    resources:
        **stage_resources("emotion_annotate"),
    script:
        "../scripts/emotion_annotate.py"


rule emotion_classifier:
    input:
        annotations=f"{EMO}/annotations.jsonl",
        base=emotion_classifier_files(),
    output:
        model=directory(f"{EMO}/classifier"),
        metrics=f"{EMO}/classifier_metrics.json",
    params:
        model=lambda wc: config["models"]["emotion_classifier"],  # a hub id is no file
        section=config["classifier"],
        precision=config["train"]["precision"],  # checkpoint_every changes no result: not a param
        work_dir=f"{WORK}/emotion_classifier",
    log:
        f"{LOGS}/emotion_classifier.log",
    benchmark:
        f"{BENCH}/emotion_classifier.tsv"
    threads: stage_threads("emotion_classifier")
    resources:
        **stage_resources("emotion_classifier"),
    script:
        "../scripts/emotion_classifier.py"


rule emotion_label:
    input:
        dialogs=lambda wc: dialog_file(wc.split),
        model=f"{EMO}/classifier",
    output:
        dialogs=f"{EMO}/labelled/{{split}}_data_dbpedia_emo.jsonl",
        stats=f"{EMO}/labelled/{{split}}_stats.json",
    wildcard_constraints:
        split="|".join(SPLITS),
    log:
        f"{LOGS}/emotion_label/{{split}}.log",
    benchmark:
        f"{BENCH}/emotion_label/{{split}}.tsv"
    threads: stage_threads("predict")
    resources:
        **stage_resources("predict"),
    script:
        "../scripts/emotion_label.py"
