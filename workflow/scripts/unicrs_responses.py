from ecrflow.data.steps import unicrs_responses
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, unicrs_responses, responses_file=i.responses, rec=i.rec, out=o.responses, stats=o.stats)
