from ecrflow.emotion.steps import emotion_classifier
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, emotion_classifier, annotations=i.annotations, out_dir=o.model, metrics_out=o.metrics,
    work_dir=p.work_dir, model_name=p.model, section=dict(p.section), train_cfg=dict(snakemake.config["train"]))
