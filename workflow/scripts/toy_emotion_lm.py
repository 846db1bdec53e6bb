from ecrflow import pipeline
from ecrflow.smk import run

run(snakemake, pipeline.toy_emotion_lm, dialogs=snakemake.input[0], config_out=snakemake.output[0],
    spec=dict(snakemake.params.spec), seed=snakemake.params.seed)
