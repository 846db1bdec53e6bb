from ecrflow.kg.steps import kg_tensors
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, kg_tensors, entity2id=i.entity2id, relation2id=i.relation2id, subkg=i.subkg, tensors=o.tensors,
    meta=o.meta, entity2id_out=o.entity2id, relation2id_out=o.relation2id, reverse=snakemake.params.reverse_edges)
