# ECR (empathetic conversational recommender) on ReDial, end to end, as files.
#   snakemake --profile profiles/local --configfile config/toy.yaml     # the toy run, offline, minutes
#   snakemake --profile profiles/slurm results/paper/tables/table1.csv  # the paper run on a SLURM cluster
from snakemake.utils import min_version

min_version("9.0")


# The paper config is always the base (found beside this file, whatever the working directory);
# --configfile files are merged over it.
configfile: f"{workflow.basedir}/config/config.yaml"


report: "workflow/report/workflow.rst"


# Seconds-long table and bookkeeping steps run where Snakemake runs (a login node on SLURM) instead of
# waiting in the queue as jobs of their own; fetch_data and hub_model are local rules too (fetch.smk).
localrules:
    dataset_stats,
    rec_table,
    judge_sample,
    table2,
    generation_objective,
    rl_comparison,
    training_curve,
    first_sentence_templates,
    chat_system,
    chat_systems,
    interactive_table,


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
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
include: "workflow/rules/interactive.smk"


if RL_KIND:

    include: "workflow/rules/rl.smk"


rule all:
    input:
        all_targets(),
    default_target: True
