from ecrflow.generate.steps import toy_llama
from ecrflow.smk import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(snakemake, toy_llama, pretrain=i.pretrain, tokenizer_config=i.tokenizer, config_out=o[0], spec=dict(p.spec),
    seed=p.seed)
