from ecrflow.judge.steps import llm_baseline
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, llm_baseline, sample=i[0], out=o.responses, summary_out=o.summary, cache_dir=p.cache_dir,
    llm=dict(p.llm), batch_size=p.batch_size, max_tokens=p.max_tokens,
    max_attempts=p.max_attempts, name=snakemake.wildcards.baseline)
