from ecrflow.smk import run
from ecrflow.tables.steps import baselines

i = snakemake.input
run(snakemake, baselines, train_rec=i.train_rec, test_rec=i.test_rec, item_ids=i.item_ids, matrix=i.matrix,
    contributions=i.contributions, kg_tensors=i.kg, out=snakemake.output[0], ks=list(snakemake.params.ks))
