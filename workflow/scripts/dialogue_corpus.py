from ecrflow.generate.steps import dialogue_corpus
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, dialogue_corpus, rec={"train": i.train_rec, "valid": i.valid_rec},
    responses={"train": i.train_responses, "valid": i.valid_responses}, items=i.items_table, subkg=i.subkg,
    relation2id=i.relation2id, train_out=o.train, valid_out=o.valid, movies_out=o.movies, report=o.report,
    relations=list(snakemake.params.relations))
