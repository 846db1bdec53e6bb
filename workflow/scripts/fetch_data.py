from ecrflow.fetch import fetch_data
from ecrflow.smk import run

run(snakemake, fetch_data, entries=snakemake.params.entries, downloads=snakemake.params.downloads,
    lock=snakemake.params.lock)
