from ecrflow.models.steps import smollm2_model
from ecrflow.smk import run

run(snakemake, smollm2_model, folder=snakemake.output[0])
