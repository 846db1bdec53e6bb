from ecrflow import pipeline
from ecrflow.smk import run

o = snakemake.output
run(snakemake, pipeline.kg_tensors, raw_dir=snakemake.params.raw_dir, tensors=o.tensors, meta=o.meta,
    entity2id_out=o.entity2id, relation2id_out=o.relation2id, reverse=snakemake.params.reverse_edges)
