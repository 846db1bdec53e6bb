from ecrflow.report.steps import training_curve
from ecrflow.smk import run

run(snakemake, training_curve, source=snakemake.input[0], out=snakemake.output[0], name=snakemake.wildcards.name)
