from ecrflow.report import curve
from ecrflow.smk import run

run(snakemake, curve, source=snakemake.input[0], out=snakemake.output[0], name=snakemake.wildcards.name)
