from ecrflow.constants import SPLITS
from ecrflow.smk import run
from ecrflow.tables.steps import dataset_stats

i = snakemake.input
run(snakemake, dataset_stats, validation=i.validation, split_stats=dict(zip(SPLITS, i.split_stats)),
    kg_meta=i.kg_meta, items_path=i.items_table, out=snakemake.output[0])
