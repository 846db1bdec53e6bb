from ecrflow import pipeline
from ecrflow.smk import run

o, p = snakemake.output, snakemake.params
run(snakemake, pipeline.filter_reviews, annotated=snakemake.input[0], train=o.train, valid=o.valid, report=o.report,
    name=snakemake.wildcards.profile, profile=dict(p.profile), options=dict(p.options))
