from ecrflow.generate.steps import filter_reviews
from ecrflow.smk import run

o, p = snakemake.output, snakemake.params
run(snakemake, filter_reviews, annotated=snakemake.input[0], train=o.train, valid=o.valid, report=o.report,
    name=snakemake.wildcards.profile, profile=dict(p.profile), options=dict(p.options))
