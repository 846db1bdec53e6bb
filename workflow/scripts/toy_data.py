from pathlib import Path

from ecrflow import pipeline
from ecrflow.smk import run

p = snakemake.params
run(snakemake, pipeline.toy_data, out_dir=Path(snakemake.output[0]).parent, toy=p.toy,
    dialog_pattern=p.dialog_pattern, reviews=p.reviews, with_emotions=p.with_emotions)
