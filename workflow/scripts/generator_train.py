from ecrflow.generate.steps import generator_train
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, generator_train, train=i.train, valid=i.valid, items=i.items_table, entity2id=i.entity2id,
    templates=i.templates, out_dir=o.model, metrics_out=o.metrics, work_dir=p.work_dir, kind=p.kind,
    base_model=p.base_model, section=dict(p.section), gen=dict(p.gen), train_cfg=dict(snakemake.config["train"]))
