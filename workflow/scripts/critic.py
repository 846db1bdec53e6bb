from ecrflow.critic.steps import critic
from ecrflow.judge.contexts import UNICRS
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, critic, sample=i.sample, files={UNICRS: None, **dict(zip(p.systems, i.replies))},
    scores=dict(zip(p.judges, i.scores)), out_dir=o.model, metrics_out=o.metrics, table_out=o.table,
    work_dir=p.work_dir, model_name=p.model, section=dict(p.section), train_cfg=dict(snakemake.config["train"]))
