from ecrflow.constants import SPLITS
from ecrflow.data.steps import items
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, items, sequences=dict(zip(SPLITS, i.sequences)), train_rec=i.train_rec, entity2id_path=i.entity2id,
    item_ids_out=o.item_ids, items_out=o.items_table)
