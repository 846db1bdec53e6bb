from ecrflow import pipeline
from ecrflow.constants import SPLITS
from ecrflow.smk import run

i = snakemake.input
run(snakemake, pipeline.dataset_stats_table, validation=i.validation, split_stats=dict(zip(SPLITS, i.split_stats)),
    kg_meta=i.kg_meta, items_path=i.items_table, out=snakemake.output[0])
