from ecrflow.models.steps import gemma3_model
from ecrflow.smk import run

run(snakemake, gemma3_model, folder=snakemake.output[0])
