from ecrflow.interactive.steps import interactive_eval
from ecrflow.smk import run

i, o, p, w = snakemake.input, snakemake.output, snakemake.params, snakemake.wildcards
run(snakemake, interactive_eval, manifest=i.get("manifest"), entity2id=i.entity2id, items=i.items_table,
    item_ids=i.item_ids, dialogs=i.dialogs, out=o.dialogues, summary_out=o.summary, cache_dir=p.cache_dir,
    system=w.system, mode=w.mode, settings=dict(p.settings), seeker_llm=dict(p.seeker),
    recommender_llm=dict(p.recommender_llm) if p.recommender_llm else None)
