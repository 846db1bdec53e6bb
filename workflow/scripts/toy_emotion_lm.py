from ecrflow.emotion.steps import toy_emotion_lm
from ecrflow.smk import run

run(snakemake, toy_emotion_lm, dialogs=snakemake.input[0], config_out=snakemake.output[0],
    spec=dict(snakemake.params.spec), seed=snakemake.params.seed)
