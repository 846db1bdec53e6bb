# ECR (empathetic conversational recommender) on ReDial, end to end, as files.
#   snakemake --profile profiles/local --configfile config/toy.yaml     # the toy run, offline, minutes
#   snakemake --profile profiles/slurm results/tables/table1.csv        # the paper run on a SLURM cluster
from snakemake.utils import min_version

min_version("9.0")


# The paper config is always the base (found beside this file, whatever the working directory);
# --configfile files are merged over it.
configfile: f"{workflow.basedir}/config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/emotion.smk"
include: "workflow/rules/kg.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/recommend.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/critic.smk"
include: "workflow/rules/report.smk"


if RL_KIND:

    include: "workflow/rules/rl.smk"


rule all:
    input:
        all_targets(),
    default_target: True
