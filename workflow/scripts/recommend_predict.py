from ecrflow.recommend import steps
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
splits = ("valid", "test")
run(snakemake, steps.recommend_predict, tables={s: getattr(i, s) for s in splits}, kg_tensors=i.kg,
    item_ids=i.item_ids, matrix=getattr(i, "matrix", None), contributions=getattr(i, "contributions", None), model_path=i.model,
    responses={s: getattr(i, f"{s}_responses", None) for s in splits},
    outputs={s: getattr(o, s) for s in splits},
    models=dict(p.models), section=dict(p.section), train_cfg=dict(snakemake.config["train"]), flags=dict(p.flags))
