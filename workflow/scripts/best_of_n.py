from ecrflow.rl.best_of_n import best_of_n
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, best_of_n, generator_dir=i.generator, critic_dir=i.critic, sample=i.sample, supervised=i.supervised,
    out=o.responses, stats_out=o.stats, n=p.n, temperature=p.temperature, max_new_tokens=p.max_new_tokens,
    context_max_length=p.context_max_length, reward_weights=dict(p.reward_weights), seed=p.seed)
