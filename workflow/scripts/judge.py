from ecrflow.judge.steps import UNICRS, judge_scores
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
files = {UNICRS: None, **dict(zip(p.systems, i.replies))}
options = dict(p.options)
run(snakemake, judge_scores, sample=i.sample, files=files, scores_out=o.scores, summary_out=o.summary,
    cache_dir=p.cache_dir, name=snakemake.wildcards.judge, llm=dict(options.pop("llm")), options=options)
