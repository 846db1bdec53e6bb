from ecrflow.recommend import steps
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, steps.recommend_train, train=i.train, valid=i.valid, kg_tensors=i.kg, item_ids=i.item_ids,
    matrix=getattr(i, "matrix", None), contributions=getattr(i, "contributions", None), init=i.init,
    train_responses=getattr(i, "train_responses", None), valid_responses=getattr(i, "valid_responses", None),
    model_out=o.model, metrics_out=o.metrics, work_dir=p.work_dir, models=dict(p.models),
    section=dict(p.section), train_cfg=dict(snakemake.config["train"]), flags=dict(p.flags),
    leave_dialog_out=p.leave_dialog_out)
