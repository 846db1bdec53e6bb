from ecrflow.interactive.steps import entity_linking
from ecrflow.smk import run

i, p = snakemake.input, snakemake.params
run(snakemake, entity_linking, entity2id=i.entity2id, items=i.items_table, dialogs=dict(zip(p.splits, i.dialogs)),
    out=snakemake.output[0])
