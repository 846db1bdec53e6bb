from ecrflow.kg.steps import cooccurrence
from ecrflow.smk import run

i, o = snakemake.input, snakemake.output
run(snakemake, cooccurrence, train_sequences=i.sequences, entity2id_path=i.entity2id, matrix=o.matrix,
    contributions=o.contributions, stats=o.stats, top_n=snakemake.params.top_n,
    emotion_filter=snakemake.params.emotion_filter)
