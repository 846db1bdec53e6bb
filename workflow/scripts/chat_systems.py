from ecrflow.interactive.steps import chat_systems
from ecrflow.smk import run

run(snakemake, chat_systems, manifests=list(snakemake.input), out=snakemake.output[0])
