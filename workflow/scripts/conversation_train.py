from ecrflow.recommend import steps
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, steps.conversation_train, train=i.train, valid=i.valid, kg_tensors=i.kg, init=i.init,
    model_out=o.model, metrics_out=o.metrics, work_dir=p.work_dir, models=dict(p.models),
    section=dict(p.section), train_cfg=dict(snakemake.config["train"]))
