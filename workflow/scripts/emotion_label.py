from ecrflow.emotion.classifier import label_dialogs
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, label_dialogs, dialog_file=i.dialogs, model_dir=i.model, out=o.dialogs, stats_out=o.stats)
