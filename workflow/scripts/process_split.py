from ecrflow.data.steps import process_split
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, process_split, dialog_file=i.dialogs, entity2id_path=i.entity2id, pretrain=o.pretrain, rec=o.rec,
    sequences=o.sequences, stats=o.stats, emotion=dict(p.emotion), require_emotion=p.require_emotion,
    emotions=p.emotions)
