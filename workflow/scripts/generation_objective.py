from ecrflow.generate.steps import generation_objective
from ecrflow.smk import run

run(snakemake, generation_objective, responses=dict(zip(snakemake.params.kinds, snakemake.input)),
    out=snakemake.output[0])
