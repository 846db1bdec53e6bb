from ecrflow import pipeline
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, pipeline.emotion_annotate, dialogs=i.dialogs, annotations_out=o.annotations, summary_out=o.summary,
    cache_dir=p.cache_dir, llm=dict(p.llm), options=dict(p.options))
