from ecrflow.judge.steps import table2
from ecrflow.smk import run

i, p = snakemake.input, snakemake.params
run(snakemake, table2, scores=dict(zip(p.judges, i.scores)), summaries=dict(zip(p.judges, i.summaries)),
    out=snakemake.output[0], paper_rows=dict(p.paper_rows), seed=p.seed)
