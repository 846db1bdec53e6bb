from ecrflow.recommend import steps
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, steps.pretrain, train=i.train, valid=i.valid, kg_tensors=i.kg, matrix=getattr(i, "matrix", None),
    contributions=getattr(i, "contributions", None), model_out=o.model, metrics_out=o.metrics, work_dir=p.work_dir,
    models=dict(p.models), section=dict(p.section), train_cfg=dict(snakemake.config["train"]), flags=dict(p.flags),
    leave_dialog_out=p.leave_dialog_out)
