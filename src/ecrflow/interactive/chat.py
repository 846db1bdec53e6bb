"""``ecrflow chat`` and ``ecrflow serve``: a built run's systems in the terminal, or behind an
OpenAI-compatible endpoint (:mod:`ecrflow.interactive.server`).

Both load ``results/<run>/interactive/system.json`` (rule ``chat_system``) from the workspace, offline, on
the CPU when there is no GPU. In the terminal each turn shows the linked entities and the emotions read from
the user's message, the top recommended items with their scores, and the reply; ``--json`` reads one user
message per line from stdin and writes one JSON object per turn instead. Commands: ``/reset`` starts a new
conversation, ``/system NAME`` switches system, ``/quit``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MANIFEST = "results/{run}/interactive/system.json"


def find_manifest(workspace: Path, run: str | None) -> Path:
    """The run's manifest in the workspace: ``--run``'s, else the only one there."""
    if run:
        path = workspace / MANIFEST.format(run=run)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: build it with\n  snakemake --profile profiles/local --configfile "
                f"config/{run}.yaml {MANIFEST.format(run=run)}\n(from the workspace; the run's models are built "
                f"on the way if they are not there yet)")
        return path
    found = sorted(workspace.glob(MANIFEST.format(run="*")))
    if len(found) != 1:
        names = ", ".join(p.parts[-3] for p in found) or "none"
        raise FileNotFoundError(f"{workspace}: name the run with --run (built runs with a chat system: {names}); "
                                f"a run's system is built by the target {MANIFEST.format(run='<run>')}")
    return found[0]


def load(workspace: str, run: str | None, systems: list[str] | None = None):
    """The workspace's ChatSystem (the working directory becomes the workspace: the manifest's paths are
    relative to it)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a run's models are local files; never reach for the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars, one per model
    ws = Path(workspace).resolve()
    manifest = find_manifest(ws, run)
    os.chdir(ws)
    from .system import ChatSystem

    return ChatSystem(manifest.relative_to(ws), systems=systems)


def show(reply, out=sys.stdout) -> None:
    """One turn for a person: what was understood, what is recommended, what is said."""
    last = reply.entities[-1] if reply.entities else []
    emo = reply.emotions[-1] if reply.emotions else []
    ents = ", ".join(f"{e['name']} [{e['kind']}]" for e in last) or "none"
    emos = ", ".join(f"{lab} {p:.2f}" for lab, p in emo[:3]) or "none"
    if len(emo) > 3:
        emos += f" (+{len(emo) - 3} more above emotion.threshold)"
    items = "  ".join(f"{i + 1}. {x['name']} ({x['score']:.2f})" for i, x in enumerate(reply.items[:5]))
    print(f"  linked:   {ents}\n  emotions: {emos}\n  ranked:   {items}\n{reply.system}> {reply.text or '(empty: the model ended its reply at once)'}", file=out)


def chat_loop(chat, system: str, *, top_k: int, as_json: bool, inp=sys.stdin, out=sys.stdout) -> int:
    history: list[tuple[str, str]] = []
    if not as_json:
        print(f"ecrflow chat: {', '.join(chat.systems)} ({system} now). /reset, /system NAME, /quit", file=out)
    while True:
        if not as_json:
            print("you> ", end="", file=out, flush=True)
        line = inp.readline()
        if not line:
            return 0
        text = line.strip()
        if not as_json and not inp.isatty():
            print(text, file=out)  # piped input: the transcript shows what was said
        if not text:
            continue
        if text == "/quit":
            return 0
        if text == "/reset":
            history = []
            continue
        if text.startswith("/system"):
            name = text.split(maxsplit=1)[1] if " " in text else ""
            if name not in chat.systems:
                print(f"no system {name!r}; this run has {', '.join(chat.systems)}", file=sys.stderr)
            else:
                system = name
            continue
        history.append(("user", text))
        reply = chat.respond(history, system=system, top_k=top_k)
        history.append(("assistant", reply.text))
        if as_json:
            print(json.dumps({"user": text, **reply.to_json()}, ensure_ascii=False), file=out, flush=True)
        else:
            show(reply, out)


def add_arguments(ap) -> None:
    ap.add_argument("--workspace", default=".", help="the folder Snakemake ran in (default: here)")
    ap.add_argument("--run", help="the run (results/<run>/); default: the only run with a chat system")
    ap.add_argument("--system", default=None, help="unicrs | ecr | ecr_rl (default: ecr where the run has it)")
    ap.add_argument("--top-k", type=int, default=10, help="items ranked per turn")


def chat_main(args) -> int:
    chat = load(args.workspace, args.run, [args.system] if args.system else None)
    system = args.system or ("ecr" if "ecr" in chat.systems else chat.systems[0])
    return chat_loop(chat, system, top_k=args.top_k, as_json=args.json)


def serve_main(args) -> int:
    from .server import ChatServer

    chat = load(args.workspace, args.run, [args.system] if args.system else None)
    server = ChatServer(chat, args.host, args.port, default_system=args.system, top_k=args.top_k)
    print(f"ecrflow serve: {', '.join(chat.systems)} at {server.url}/chat/completions (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
