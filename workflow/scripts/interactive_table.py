from ecrflow.interactive.steps import interactive_dialogues, interactive_table
from ecrflow.smk import run


def both(summaries, dialogues, *, table, page, per_system):
    interactive_table(summaries, out=table)
    interactive_dialogues(dialogues, out=page, per_system=per_system)


i, o = snakemake.input, snakemake.output
run(snakemake, both, summaries=list(i.summaries), dialogues=list(i.dialogues), table=o.table, page=o.page,
    per_system=snakemake.params.per_system)
