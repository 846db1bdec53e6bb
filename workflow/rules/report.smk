# The report: `snakemake --report report.html` gathers the metric tables (flagged with report() where they
# are made) and these training-curve figures, with captions (workflow/report/*.rst).


rule training_curve:
    input:
        lambda wc: CURVES[wc.name],
    output:
        report(f"{REPORT}/curves/{{name}}.png", caption="../report/curve.rst", category="Training curves"),
    wildcard_constraints:
        name="|".join(CURVES) or "no-curve",
    log:
        f"{LOGS}/training_curve/{{name}}.log",
    benchmark:
        f"{BENCH}/training_curve/{{name}}.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/training_curve.py"
