from ecrflow.models.steps import minilm_model
from ecrflow.smk import run

run(snakemake, minilm_model, folder=snakemake.output[0])
