from ecrflow.recommend.steps import toy_models
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, toy_models, pretrain=i.pretrain, rec=i.rec, lm_config=o.lm, encoder_config=o.encoder,
    summary=o.summary, spec=dict(p.spec), seed=p.seed)
