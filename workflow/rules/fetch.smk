# Inputs from outside the project: the raw release files (fetch_data) and the hub models (hub_model). Both
# are local rules: they need the network, which compute nodes often lack, and no GPU. `ecrflow fetch` runs
# the same code for every fetch.data entry and every hub model of a config. Paths are in common.smk.

if FETCH_DATA:

    rule fetch_data:
        output:
            raw_files(),
        params:
            entries=FETCH_ENTRIES,
            downloads=config["fetch"]["downloads"],
            lock=config["fetch"]["lock"],
        log:
            f"{LOGS}/fetch_data.log",
        localrule: True
        script:
            "../scripts/fetch_data.py"


if HUB_MODELS:

    rule hub_model:
        output:
            directory(f"{HUB}/{{repo}}"),
        wildcard_constraints:
            repo="|".join(re.escape(Path(f).name) for f in HUB_MODELS),
        params:
            repo_id=lambda wc: HUB_MODELS[f"{HUB}/{wc.repo}"],
            revision=lambda wc: config["fetch"]["revisions"].get(HUB_MODELS[f"{HUB}/{wc.repo}"]),
            lock=config["fetch"]["lock"],
        log:
            f"{SHARED_MODELS}/logs/hub_model/{{repo}}.log",
        localrule: True
        script:
            "../scripts/hub_model.py"
