from ecrflow.recommend import steps
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, steps.conversation_generate, rec_tables=dict(zip(p.splits, i.rec)), kg_tensors=i.kg,
    model_path=i.model, outputs=dict(zip(p.splits, o)), models=dict(p.models), section=dict(p.section),
    train_cfg=dict(snakemake.config["train"]))
