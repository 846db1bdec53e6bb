from ecrflow.recommend.steps import rec_table
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
seeds = list(p.seeds) if p.seeds else [None] * len(p.variants)
run(snakemake, rec_table, name=snakemake.wildcards.table, runs=list(zip(p.variants, seeds, i.predictions)),
    fingerprint_files=list(i.fingerprint), out=o.table, provenance=o.provenance, ks=list(p.ks),
    auc_batch_size=p.auc_batch_size, config=snakemake.config)
