from ecrflow.emotion.steps import emotion_label
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, emotion_label, dialog_file=i.dialogs, model_dir=i.model, out=o.dialogs, stats_out=o.stats)
