from ecrflow.interactive.steps import chat_system
from ecrflow.smk import run

run(snakemake, chat_system, out=snakemake.output[0], manifest=dict(snakemake.params.manifest))
