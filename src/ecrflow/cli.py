"""``ecrflow``: what is not a Snakemake target.

  ecrflow fetch    [--configfile F ...]   download and verify the raw files and hub models a config names
  ecrflow estimate --configfile F ...     time a few training steps per stage and project the run's hours
  ecrflow check    --configfile F ...     the configs as a run would merge them: file, line and key of any error
  ecrflow chat  [--run R] [--json]        talk to a built run's systems in the terminal
  ecrflow serve [--run R] [--port P]      the same systems behind an OpenAI-compatible /v1/chat/completions

fetch and estimate read the configs as Snakemake does (config/config.yaml first, the given files merged over
it); chat and serve read the run's results/<run>/interactive/system.json (the chat_system rule).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .errors import ConfigError, InputError

BASE = "config/config.yaml"


def fetch(args) -> int:
    from .config import load_config_files
    from .fetch import fetch_all
    from .models.hub import SOURCE_FILE, fetch_model, hub_models

    config = load_config_files(args.configfile, args.base)
    section = config["fetch"]
    if not args.models_only:
        entries = [e for e in section["data"] if not args.only or e["name"] in args.only]
        if not entries:
            print("fetch.data names nothing to download", file=sys.stderr)
        fetch_all(entries, section["downloads"], section["lock"])
        for e in entries:
            print(f"{e['name']}: {e.get('unpack_to') or section['downloads']}  ({e.get('licence') or 'licence: see source'})")
    if not args.data_only and section["models"]:
        for folder, repo_id in hub_models(config).items():
            if (Path(folder) / SOURCE_FILE).exists():
                print(f"{repo_id}: present in {folder}")
                continue
            record = fetch_model(repo_id, folder, section["revisions"], section["lock"])
            print(f"{repo_id}: {folder} at commit {record['revision']}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ecrflow", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="download and verify the raw files and hub models a config names")
    f.add_argument("--configfile", nargs="*", default=[], help="config files merged over the base, in order")
    f.add_argument("--base", default=BASE, help=f"merged first when it exists (default: {BASE})")
    f.add_argument("--only", nargs="*", help="only these fetch.data entries (by name)")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--data-only", action="store_true", help="the raw files, no hub models")
    g.add_argument("--models-only", action="store_true", help="the hub models, no raw files")
    sub.add_parser("estimate", help="project each training stage's time and memory (ecrflow estimate -h)",
                   add_help=False)
    k = sub.add_parser("check", help="validate config files as a run would merge them (file, line, key)")
    k.add_argument("--configfile", nargs="*", default=[], help="config files merged over the base, in order")
    k.add_argument("--base", default=BASE, help=f"merged first when it exists (default: {BASE})")
    from .interactive.chat import add_arguments

    c = sub.add_parser("chat", help="talk to a built run's systems in the terminal")
    add_arguments(c)
    c.add_argument("--json", action="store_true", help="one user message per stdin line, one JSON object per turn")
    s = sub.add_parser("serve", help="an OpenAI-compatible /v1/chat/completions endpoint over a run's systems")
    add_arguments(s)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    args, rest = ap.parse_known_args(argv)
    if args.command == "estimate":
        from .estimate import main as estimate_main

        return estimate_main(rest)
    if args.command in ("chat", "serve") and not rest:
        from .interactive.chat import chat_main, serve_main

        try:
            return (chat_main if args.command == "chat" else serve_main)(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"ecrflow {args.command}: {e}", file=sys.stderr)
            return 1
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "check":
        from .config import load_config_files

        try:
            config = load_config_files(args.configfile, args.base)
        except ConfigError as e:
            print(f"ecrflow check: {e}", file=sys.stderr)
            return 1
        print(f"config valid: run {config['run']}, results in results/{config['run']}/")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for name in ("httpx", "httpx2"):  # one line per HTTP request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    if not sys.stderr.isatty():  # download bars redrawn into a log file are noise
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        return fetch(args)
    except (InputError, ConfigError) as e:
        print(f"ecrflow fetch: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
