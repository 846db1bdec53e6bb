from ecrflow.data.steps import validate_input
from ecrflow.smk import run

p = snakemake.params
run(snakemake, validate_input, raw_dir=p.raw_dir, report_path=snakemake.output[0], dialog_pattern=p.dialog_pattern,
    require_emotion=p.require_emotion, unknown_entities=p.unknown_entities, reviews=p.reviews,
    split_overlap=p.split_overlap)
