from ecrflow.generate.steps import review_knowledge
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, review_knowledge, reviews=i.reviews, entity2id=i.entity2id, relation2id=i.relation2id,
    subkg=i.subkg, items=i.items_table, reviews_out=o.reviews, movies_out=o.movies, report=o.report,
    knowledge=dict(p.knowledge))
