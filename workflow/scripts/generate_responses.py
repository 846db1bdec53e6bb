from ecrflow.generate.steps import generate_responses
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, generate_responses, model_dir=i.model, predictions=i.predictions, responses=i.responses, rec=i.rec,
    items=i.items_table, entity2id=i.entity2id, relation2id=i.relation2id, subkg=i.subkg, movie_knowledge=i.movies,
    out=o.responses, stats_out=o.stats, gen=dict(p.gen), section=dict(p.section), knowledge_relations=list(p.relations),
    train_cfg=dict(snakemake.config["train"]))
