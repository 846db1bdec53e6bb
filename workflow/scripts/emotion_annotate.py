from ecrflow.emotion.steps import emotion_annotate
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, emotion_annotate, dialogs=i.dialogs, annotations_out=o.annotations, summary_out=o.summary,
    cache_dir=p.cache_dir, options=dict(p.options))
