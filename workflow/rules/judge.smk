# Subjective evaluation (Table 2, paper Section 5.3): the judged sample of a split, the zero-shot LLM
# baselines' replies, each judge's scores of every system (pseudonyms shuffled per context), Table 2.
# Paths and input functions are in common.smk. Every LLM rule fails, writing nothing, when a request has no
# answer after the backend's retries (ecrflow.llm.stage); the request cache is deliberately not an output,
# so it survives the failed job and a plain rerun sends only the missing requests.


rule judge_sample:
    input:
        rec=f"{PROCESSED}/{{split}}_rec.parquet",
        generated=lambda wc: [f"{GEN}/{k}/{wc.split}_responses.jsonl" for k in config["generation"]["kinds"]],
    output:
        f"{JUDGE}/{{split}}_sample.jsonl",
    wildcard_constraints:
        split="valid|test",
    params:
        kinds=config["generation"]["kinds"],
        n=lambda wc: config["judge"]["samples"][wc.split],
        seed=config["judge"]["seed"],
        max_history=config["judge"]["max_history"],
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/judge_sample/{{split}}.log",
    benchmark:
        f"{BENCH}/judge_sample/{{split}}.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/judge_sample.py"


rule llm_baseline:
    input:
        f"{JUDGE}/test_sample.jsonl",
        model=lambda wc: llm_model_inputs(BASELINE_SPECS[wc.baseline]["llm"]),
    output:
        responses=f"{JUDGE}/baselines/{{baseline}}/test_responses.jsonl",
        summary=f"{JUDGE}/baselines/{{baseline}}/test_summary.json",
    wildcard_constraints:
        baseline="|".join(BASELINE_SPECS) or "no-baseline",
    params:
        llm=lambda wc: BASELINE_SPECS[wc.baseline]["llm"],
        batch_size=config["judge"]["batch_size"],
        max_tokens=config["judge"]["baseline_max_tokens"],
        max_attempts=config["judge"].get("baseline_max_attempts", 3),  # an empty answer is asked again
        cache_dir=lambda wc: f"{WORK}/llm_cache/baseline/{wc.baseline}",  # resumable answers; not an output
    log:
        f"{LOGS}/llm_baseline/{{baseline}}.log",
    benchmark:
        f"{BENCH}/llm_baseline/{{baseline}}.tsv"
    threads: stage_threads("judge")
    resources:
        **stage_resources("judge"),
    script:
        "../scripts/llm_baseline.py"


rule judge:
    input:
        sample=f"{JUDGE}/{{split}}_sample.jsonl",
        replies=lambda wc: [f for f in judged_systems(wc.split).values() if f],
        model=lambda wc: llm_model_inputs(JUDGE_SPECS[wc.judge]["llm"]),
    output:
        scores=f"{JUDGE}/{{judge}}/{{split}}_scores.parquet",
        summary=f"{JUDGE}/{{judge}}/{{split}}_summary.json",
    wildcard_constraints:
        judge="|".join(JUDGE_NAMES) or "no-judge",
        split="valid|test",
    params:
        systems=lambda wc: [s for s, f in judged_systems(wc.split).items() if f],
        sample_systems=lambda wc: [s for s, f in judged_systems(wc.split).items() if not f],  # read from the sample
        options=lambda wc: judge_options(wc.judge),
        cache_dir=lambda wc: f"{WORK}/llm_cache/judge/{wc.judge}",  # resumable answers; not an output
    priority: CRITICAL_PATH
    log:
        f"{LOGS}/judge/{{judge}}_{{split}}.log",
    benchmark:
        f"{BENCH}/judge/{{judge}}_{{split}}.tsv"
    threads: stage_threads("judge")
    resources:
        **stage_resources("judge"),
    script:
        "../scripts/judge.py"


rule table2:
    input:
        scores=expand(f"{JUDGE}/{{judge}}/test_scores.parquet", judge=JUDGE_NAMES),
        summaries=expand(f"{JUDGE}/{{judge}}/test_summary.json", judge=JUDGE_NAMES),  # the fluency check
    output:
        report(f"{TABLES}/table2.csv", caption="../report/tables.rst", category="Tables"),
    params:
        judges=JUDGE_NAMES,
        paper_rows={f"llm_{b}": s.get("paper_row") or "" for b, s in BASELINE_SPECS.items()},
        seed=config["judge"]["seed"],
    log:
        f"{LOGS}/table2.log",
    benchmark:
        f"{BENCH}/table2.tsv"
    resources:
        **stage_resources("default"),
    script:
        "../scripts/table2.py"
