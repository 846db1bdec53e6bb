from ecrflow.generate.steps import first_sentence_templates
from ecrflow.smk import run

run(snakemake, first_sentence_templates, responses=snakemake.input[0], out=snakemake.output[0], n=snakemake.params.n)
