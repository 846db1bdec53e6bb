from ecrflow.generate.generator import GeneratorSpec, train_generator
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, train_generator, train=i.train, valid=i.valid, items=i.items_table, entity2id=i.entity2id,
    templates=i.templates, out_dir=o.model, metrics_out=o.metrics, work_dir=p.work_dir,
    spec=GeneratorSpec.from_config(p.kind, dict(p.section), p.base_model), section=dict(p.section), gen=dict(p.gen),
    train_cfg=dict(snakemake.config["train"]))
