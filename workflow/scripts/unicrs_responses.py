from ecrflow import pipeline
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, pipeline.unicrs_responses, responses_file=i.responses, rec=i.rec, out=o.responses, stats=o.stats)
