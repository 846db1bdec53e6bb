from ecrflow.critic.steps import critic
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
files = {**dict.fromkeys(p.sample_systems), **dict(zip(p.systems, i.replies))}  # None: read from the sample
run(snakemake, critic, sample=i.sample, files=files,
    scores=dict(zip(p.judges, i.scores)), out_dir=o.model, metrics_out=o.metrics, table_out=o.table,
    work_dir=p.work_dir, model_name=p.model, section=dict(p.section), train_cfg=dict(snakemake.config["train"]))
