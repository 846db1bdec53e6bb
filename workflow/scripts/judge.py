from ecrflow.judge.steps import judge
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
files = {**dict.fromkeys(p.sample_systems), **dict(zip(p.systems, i.replies))}  # None: read from the sample
run(snakemake, judge, sample=i.sample, files=files, scores_out=o.scores,
    summary_out=o.summary, cache_dir=p.cache_dir, name=snakemake.wildcards.judge, options=dict(p.options))
