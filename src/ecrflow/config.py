"""Config validation against ``workflow/schemas/config.schema.yaml``.

The workflow calls :func:`validate_config` before it builds the DAG, so a misspelt key or a bad value stops
the run at once, naming the key path (``recommend.lr``), instead of hours later inside a job.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

from .errors import ConfigError

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
RESULTS_ROOT = "results"
# Models converted from PyPI packages and hub snapshots: they depend on no config, so every run shares them.
SHARED_MODELS = f"{RESULTS_ROOT}/models"
RESULTS_PLACEHOLDER = "{results}"


def run_folder(config: dict) -> str:
    """The run's results folder, results/<run>: each config (toy, real_sample, paper, or --config run=NAME)
    writes only there, so runs of different configs coexist and never plan reruns of each other's files."""
    run = config["run"]
    if run == Path(SHARED_MODELS).name:
        raise ConfigError(f"invalid config:\n  run: {run!r} is the shared folder {SHARED_MODELS}; choose another name")
    return f"{RESULTS_ROOT}/{run}"


def expand_results(config: dict, folder: str) -> None:
    """Replace "{results}" in the config's path values (models.*, data.raw_dir) by the run's folder, in
    place, so the scripts read the same paths as the rules."""
    config["data"]["raw_dir"] = config["data"]["raw_dir"].replace(RESULTS_PLACEHOLDER, folder)
    for key, value in config["models"].items():
        config["models"][key] = value.replace(RESULTS_PLACEHOLDER, folder)


def load_schema(path=None) -> dict:
    path = Path(path) if path is not None else SCHEMA
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_config_files(files: list[str], base: str | None = None) -> dict:
    """The config a Snakemake run would see: ``base`` (the paper config, when it exists and is not among
    ``files``) with ``files`` merged over it in order, validated, "{results}" expanded to the run's folder."""

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    paths = ([base] if base and Path(base).exists() and Path(base).resolve() not in
             [Path(f).resolve() for f in files] else []) + list(files)
    config: dict = {}
    for p in paths:
        config = merge(config, read_config_file(p))
    validate_config(config)
    expand_results(config, run_folder(config))
    return config


def read_config_file(path) -> dict:
    """One YAML config file; a syntax error names the file, line and column (Snakemake's own loader says only
    "Config file is not valid JSON or YAML")."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({e.problem or e.context})") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of sections, got {type(data).__name__}")
    return data or {}


def _key_path(error) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate_config(config: dict, schema: dict | None = None) -> None:
    """Raise :class:`ConfigError` listing every schema violation with its key path."""
    import jsonschema

    schema = schema if schema is not None else load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for e in errors:
            if e.validator == "additionalProperties":
                extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
                where = _key_path(e)
                for key in extra:
                    full = key if where == "<top level>" else f"{where}.{key}"
                    lines.append(f"  {full}: unknown key (allowed here: {', '.join(sorted(e.schema['properties']))})")
            else:
                lines.append(f"  {_key_path(e)}: {e.message}{_number_hint(e)}")
        raise ConfigError("invalid config:\n" + "\n".join(lines))
    _check_consistency(config)


def _number_hint(e) -> str:
    """YAML 1.1 (PyYAML, Snakemake) reads ``1e-3`` as a string: say so where a number was expected."""
    wanted = e.schema.get("type") if e.validator == "type" else None
    wanted = wanted if isinstance(wanted, list) else [wanted]
    if isinstance(e.instance, str) and ({"number", "integer"} & set(wanted)):
        try:
            float(e.instance)
        except ValueError:
            return ""
        written = re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{float(e.instance):.1e}")
        return f" (YAML reads {e.instance} as a string: write it with a decimal point and a signed exponent, {written})"
    return ""


def _check_consistency(config: dict) -> None:
    data = config["data"]
    if "{split}" not in data["dialog_pattern"]:
        raise ConfigError("invalid config:\n  data.dialog_pattern: must contain '{split}', "
                          f"got {data['dialog_pattern']!r}")
    variants = config["variants"]
    problems = []
    for name, v in variants["recommend"].items():
        if v.get("copy") and not v["global_entities"]:
            problems.append(f"  variants.recommend.{name}.copy: the copy scores read the global entities' "
                            f"co-occurrence rows; set global_entities: true or copy: false")
        if v["pretrain"] not in variants["pretrain"]:
            problems.append(f"  variants.recommend.{name}.pretrain: {v['pretrain']!r} is not a stage-1 variant "
                            f"(variants.pretrain has {', '.join(sorted(variants['pretrain']))})")
    for table in ("table1", "table3"):  # tables.seeds is not a table
        for row in config["tables"][table]:
            if row not in variants["recommend"]:
                problems.append(f"  tables.{table}: {row!r} is not a stage-2 variant "
                                f"(variants.recommend has {', '.join(sorted(variants['recommend']))})")
    gen = config["generation"]
    if gen["rec_variant"] not in variants["recommend"]:
        problems.append(f"  generation.rec_variant: {gen['rec_variant']!r} is not a stage-2 variant")
    for kind in gen["kinds"]:
        g = config["generator"][kind]
        if g["profile"] not in config["reviews"]["profiles"]:
            problems.append(f"  generator.{kind}.profile: {g['profile']!r} is not in reviews.profiles")
        if g["method"] == "lora" and "lora" not in g:
            problems.append(f"  generator.{kind}.lora: method lora needs r, alpha, dropout and target_modules")
    judge, rl = config["judge"], config["rl"]
    for what in ("judges", "baselines"):
        names = [j["name"] for j in judge[what]]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"  judge.{what}: names must be unique, {', '.join(dup)} repeated")
    from .judge.tables import PAPER_TABLE2

    for b in judge["baselines"]:
        if b.get("paper_row") and b["paper_row"] not in PAPER_TABLE2:
            problems.append(f"  judge.baselines.{b['name']}.paper_row: {b['paper_row']!r} is not a Table 2 row "
                            f"({', '.join(PAPER_TABLE2)})")
    for j in judge["judges"]:
        if j.get("scoring", judge["scoring"]) == "expected" and j["llm"]["kind"] == "lexicon":
            problems.append(f"  judge.judges.{j['name']}.scoring: the lexicon judge counts words and has no digit "
                            "distribution; give it scoring: listwise")
    unknown = sorted(set(config["critic"].get("judges") or []) - {j["name"] for j in judge["judges"]})
    if unknown:
        problems.append(f"  critic.judges: {', '.join(unknown)} not in judge.judges")
    if rl["kind"] is not None and rl["kind"] not in gen["kinds"]:
        problems.append(f"  rl.kind: {rl['kind']!r} is not in generation.kinds ({', '.join(gen['kinds'])})")
    if rl["kind"] is not None and not judge["judges"]:
        problems.append("  rl.kind: the RL stage rewards with the critic, which needs at least one judge")
    if not any(w > 0 for w in rl["reward_weights"].values()):
        problems.append("  rl.reward_weights: at least one weight must be positive")
    if "unicrs" not in variants["pretrain"]:
        problems.append("  variants.pretrain: the conversation module starts from the 'unicrs' stage-1 variant")
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))


def config_hash(config: dict) -> str:
    """A short stable hash of a config (or a section of it), for provenance files."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def section(cls, values, name: str = ""):
    """A config section (a dict, after schema validation) as the typed dataclass ``cls`` that a stage's code
    takes. Keys the dataclass does not declare are ignored only when they are listed in ``cls.IGNORED``
    (a section may carry settings that another rule reads); any other unknown key, and a missing field
    without a default, raise :class:`ConfigError` naming ``name``: code and schema must agree."""
    import dataclasses

    if isinstance(values, cls):
        return values
    fields = {f.name: f for f in dataclasses.fields(cls)}
    ignored = set(getattr(cls, "IGNORED", ()))
    unknown = sorted(set(values) - set(fields) - ignored)
    if unknown:
        raise ConfigError(f"config section {name or cls.__name__}: {cls.__name__} has no field(s) "
                          f"{', '.join(unknown)}")
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config section {name or cls.__name__}: missing {', '.join(missing)}")
    return cls(**{k: v for k, v in values.items() if k in fields})
