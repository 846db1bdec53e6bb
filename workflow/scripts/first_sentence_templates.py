from ecrflow import pipeline
from ecrflow.smk import run

run(snakemake, pipeline.first_sentence_templates, responses=snakemake.input[0], out=snakemake.output[0],
    n=snakemake.params.n)
