from ecrflow.judge.steps import judge_sample
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, judge_sample, rec=i.rec, generated=dict(zip(p.kinds, i.generated)), out=o[0], n=p.n, seed=p.seed,
    max_history=p.max_history)
