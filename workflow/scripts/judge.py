from ecrflow.judge.contexts import UNICRS
from ecrflow.judge.steps import judge
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, judge, sample=i.sample, files={UNICRS: None, **dict(zip(p.systems, i.replies))}, scores_out=o.scores,
    summary_out=o.summary, cache_dir=p.cache_dir, name=snakemake.wildcards.judge, options=dict(p.options))
