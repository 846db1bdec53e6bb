from pathlib import Path

from ecrflow.data.steps import toy_data
from ecrflow.smk import run

p = snakemake.params
run(snakemake, toy_data, out_dir=Path(snakemake.output[0]).parent, toy=dict(p.toy), dialog_pattern=p.dialog_pattern,
    reviews=p.reviews, with_emotions=p.with_emotions)
