from ecrflow.rl.steps import rl_comparison
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, rl_comparison, sample=i.sample, supervised=i.supervised, rl=i.rl, bon=i.bon, rl_metrics=i.rl_metrics,
    critic_dir=i.critic, scores=dict(zip(p.judges, i.scores)), out=o[0], supervised_name=p.supervised_name,
    rl_name=p.rl_name, bon_name=p.bon_name, bon_n=p.bon_n, reward_weights=dict(p.reward_weights), n_boot=p.n_boot,
    seed=p.seed)
