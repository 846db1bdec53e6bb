"""Hub models downloaded once, at a pinned revision, before any GPU job (the ``hub_model`` rule).

Compute nodes often have no internet, and a hub id loaded inside each job follows whatever the branch holds
that day. So every hub id of ``models.*`` is downloaded by one local rule into ``results/models/hub/<org>--
<name>/`` at a pinned commit: the config's (``fetch.revisions``), else the lock file's, else the branch head,
whose commit is then recorded in the lock (``fetch.lock``, committed beside the configs). The jobs load that
folder with ``HF_HUB_OFFLINE=1``. ``HF_ENDPOINT`` points the download at a mirror (or, in the tests, at a
loopback server).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..config import SHARED_MODELS
from ..errors import ConfigError

log = logging.getLogger(__name__)
HUB_ROOT = f"{SHARED_MODELS}/hub"  # the hub_model rule's outputs
SOURCE_FILE = "ecrflow_hub.json"  # in the folder: repo id, commit and files, for provenance
# What a transformers folder needs; pytorch_model.bin only where the repo has no safetensors.
WANTED = ("*.json", "*.jinja", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.py")
LEGACY_WEIGHTS = ("*.bin",)


class HubFetchError(ConfigError):
    """A hub model cannot be downloaded: gated, missing, unreachable; the message says what to do."""


def folder_name(repo_id: str) -> str:
    return repo_id.replace("/", "--")


def hub_folder(repo_id: str) -> str:
    """Where the hub_model rule puts ``repo_id``: results/models/hub/<org>--<name>, shared by every run."""
    return f"{HUB_ROOT}/{folder_name(repo_id)}"


def _llm_specs(config: dict) -> list[dict]:
    return [config["emotion_labels"]["llm"], *(j["llm"] for j in config["judge"]["judges"]),
            *(b["llm"] for b in config["judge"]["baselines"])]


def _hf_hub_model(spec: dict) -> str | None:
    """The hub id an hf LLM backend loads (None: another kind, a local folder, or a GGUF file, which the
    snapshot would not hold)."""
    from .loading import looks_local

    hf = spec.get("hf") or {}
    model = hf.get("model")
    if spec.get("kind") == "hf" and model and not hf.get("gguf_file") and not looks_local(model):
        return model
    return None


def hub_models(config: dict) -> dict[str, str]:
    """folder -> hub id, for every hub id of ``models.*`` and of the hf LLM backends of a config."""
    from .loading import looks_local

    ids = [n for n in config["models"].values() if not looks_local(n)]
    ids += [m for m in map(_hf_hub_model, _llm_specs(config)) if m]
    return {hub_folder(i): i for i in dict.fromkeys(ids)}


def use_hub_folders(config: dict) -> dict[str, str]:
    """Point those hub ids at their hub_model folders, in place (so rules take the folder as an input and
    the jobs load it offline); returns folder -> hub id."""
    found = hub_models(config)
    folder_of = {repo_id: folder for folder, repo_id in found.items()}
    for key, name in config["models"].items():
        config["models"][key] = folder_of.get(name, name)
    for spec in _llm_specs(config):
        model = _hf_hub_model(spec)
        if model:
            spec["hf"] = {**spec["hf"], "model": folder_of[model]}
    return found


def pinned_revision(repo_id: str, revisions: dict, lock: dict) -> str | None:
    """The commit to download: the config's, else the lock's; None: the default branch (then recorded)."""
    return revisions.get(repo_id) or (lock.get("models", {}).get(repo_id) or {}).get("revision")


def _explain(repo_id: str, error: Exception) -> HubFetchError:
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if isinstance(error, GatedRepoError):
        return HubFetchError(
            f"{repo_id} is gated: the hub serves it only to an account that accepted its licence\n"
            f"  hint: accept the licence on https://huggingface.co/{repo_id}, then log in where the fetch runs "
            f"(`hf auth login`, or HF_TOKEN=...) and run it again; or point the models.* key at a local folder "
            f"that holds the model")
    if isinstance(error, RevisionNotFoundError):
        return HubFetchError(f"{repo_id}: the pinned revision does not exist on {constants.ENDPOINT}\n  hint: fix "
                             f"fetch.revisions, or delete its entry from the lock file to pin the current head")
    if isinstance(error, RepositoryNotFoundError):
        return HubFetchError(f"{repo_id}: no such model on {constants.ENDPOINT} (or it is private)\n  hint: check "
                             f"the id, or log in (HF_TOKEN) for a private one")
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return HubFetchError(f"{repo_id}: cannot download from {constants.ENDPOINT}: {first}\n  hint: the machine "
                         f"that runs the hub_model rule (a login node: it is a local rule) needs the network; "
                         f"HF_ENDPOINT selects a mirror")


def download_model(repo_id: str, folder, revision: str | None = None) -> dict:
    """Download ``repo_id`` at ``revision`` (None: the default branch) into ``folder``; returns the record
    (repo, commit, files) also written to ``folder/ecrflow_hub.json`` (SOURCE_FILE)."""
    from huggingface_hub import HfApi, snapshot_download

    folder = Path(folder)
    try:
        info = HfApi().model_info(repo_id, revision=revision)
        names = [s.rfilename for s in info.siblings or []]
        patterns = list(WANTED)
        if not any(n.endswith(".safetensors") for n in names):
            patterns += LEGACY_WEIGHTS
        tmp = folder.with_name(folder.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        snapshot_download(repo_id, revision=info.sha, local_dir=tmp, allow_patterns=patterns)
    except Exception as e:  # huggingface_hub's errors and httpx's; each is explained in one message
        raise _explain(repo_id, e) from None
    shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
    files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    record = {"repo": repo_id, "revision": info.sha, "files": files,
              "endpoint": os.environ.get("HF_ENDPOINT", "https://huggingface.co")}
    (tmp / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    log.info("%s: downloaded %d file(s) at commit %s into %s", repo_id, len(files), info.sha, folder)
    return record


def fetch_model(repo_id: str, folder, revisions: dict, lock_path) -> dict:
    """Download one hub model at its pinned revision (the config's, else the lock's, else the branch head)
    and record the downloaded commit in the lock."""
    from ..fetch import read_lock, update_lock

    revision = pinned_revision(repo_id, revisions, read_lock(lock_path))
    record = download_model(repo_id, folder, revision)
    if revision is None:
        log.warning("%s: no pinned revision: recorded commit %s in %s; commit it so that every later fetch "
                    "downloads the same weights", repo_id, record["revision"], lock_path)

    def pin(lock: dict) -> None:
        lock["models"][repo_id] = {"revision": record["revision"]}

    update_lock(lock_path, pin)
    return record
