from ecrflow.models.steps import hub_model
from ecrflow.smk import run

run(snakemake, hub_model, repo_id=snakemake.params.repo_id, folder=snakemake.output[0],
    revision=snakemake.params.revision, lock=snakemake.params.lock)
