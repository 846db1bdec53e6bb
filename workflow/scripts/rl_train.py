from ecrflow.rl.steps import rl_train
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, rl_train, generator_dir=i.generator, critic_dir=i.critic, responses=i.responses, rec=i.rec,
    out_dir=o.model, log_out=o.log, metrics_out=o.metrics, work_dir=p.work_dir, section=dict(p.section),
    gen=dict(p.gen), train_cfg=dict(snakemake.config["train"]))
