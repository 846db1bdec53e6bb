from ecrflow.judge.steps import table2
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, table2, scores=dict(zip(p.judges, i)), out=o[0], paper_rows=dict(p.paper_rows), seed=p.seed)
