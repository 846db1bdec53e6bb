from ecrflow import pipeline
from ecrflow.smk import run

run(snakemake, pipeline.generation_objective, responses=dict(zip(snakemake.params.kinds, snakemake.input)),
    out=snakemake.output[0])
