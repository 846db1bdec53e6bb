"""The interactive rules' steps (called by workflow/scripts), one function per rule of
workflow/rules/interactive.smk, named as the rule."""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path

from ..config import section
from ..io import atomic_path, iter_jsonl, read_json, write_csv, write_json, write_jsonl

log = logging.getLogger(__name__)


def chat_system(*, out, manifest: dict) -> None:
    """The manifest of the run's conversational systems: every file and setting ``ecrflow chat``, the server
    and the simulated-user evaluation load (paths relative to the workspace; the rule's inputs, so Snakemake
    has checked that they exist)."""
    write_json(out, manifest)
    log.info("chat systems %s of run %s", ", ".join(manifest["systems"]), manifest["run"])


def chat_systems(manifests: list, *, out) -> None:
    """The run's systems in one manifest (``ecrflow chat``, ``ecrflow serve``): the per-system manifests share
    everything but their recommenders, generators and systems, which are merged."""
    merged: dict = {}
    for path in manifests:
        m = read_json(path)
        if not merged:
            merged = {**m, "recommenders": {}, "generators": {}, "systems": {}}
        for key in ("recommenders", "generators", "systems"):
            merged[key].update(m[key])
        for key in ("movie_knowledge", "generation", "relations"):  # the generators' (none in UniCRS's)
            merged[key] = merged.get(key) or m.get(key)
    if not merged:
        raise ValueError("this run trains no conversational system (no UniCRS variant and no generator)")
    write_json(out, merged)
    log.info("chat systems: %s", ", ".join(merged["systems"]))


def entity_linking(entity2id, items, dialogs: dict, *, out) -> None:
    """The linker's precision and recall against the release's links, per split and per way of writing the
    titles (ReDial's "Title (Year)" as the interface inserted them, and the bare title a user types)."""
    from .linking import EntityLinker, gold_links, link_scores

    e2i = read_json(entity2id)
    linker = EntityLinker.from_files(entity2id, items)
    rows = []
    for split, path in dialogs.items():
        for titles in ("with_year", "without_year"):
            msgs = gold_links(path, years=titles == "with_year")
            t0 = time.perf_counter()
            scores = link_scores(linker, msgs, e2i)
            ms = 1000 * (time.perf_counter() - t0) / max(len(msgs), 1)
            rows += [{"split": split, "titles": titles, **r, "ms_per_message": round(ms, 3)} for r in scores]
    write_csv(out, rows)
    log.info("entity linking: %s", json.dumps(rows))


def interactive_eval(*, manifest, entity2id, items, item_ids, dialogs, out, summary_out, cache_dir, system: str,
                     mode: str, settings: dict, seeker_llm: dict, recommender_llm: dict | None) -> None:
    """One system (its manifest; None for the LLM-only recommender) in conversation with the simulated seeker,
    in one mode (ecrflow.interactive.simulate)."""
    from ..llm import backend_from_config
    from ..llm.cache import RequestCache
    from .linking import EntityLinker
    from .simulate import SimSettings, converse, dialogue_record, scripted_dialogues, summarise

    opts = section(SimSettings, settings, "interactive")
    linker = EntityLinker.from_files(entity2id, items)
    catalogue = set(read_json(item_ids))
    sims = scripted_dialogues(dialogs, linker, read_json(entity2id), catalogue, opts.dialogues, opts.seed)
    if not sims:
        raise ValueError(f"{dialogs}: no dialogue whose recommender mentions a movie of the item set")
    seeker = backend_from_config(seeker_llm, opts.batch_size)
    t0 = time.perf_counter()
    with RequestCache(Path(cache_dir) / "seeker") as cache:
        if system == "llm":
            respond = _llm_responder(backend_from_config(recommender_llm, opts.batch_size), Path(cache_dir) / "llm",
                                     linker, catalogue, opts)
        else:
            respond = _model_responder(manifest, system, opts.k)
        counts = converse(sims, respond, seeker, cache, mode=mode, settings=opts, stage=f"seeker {system}/{mode}")
    seconds = time.perf_counter() - t0
    records = [dialogue_record(d, system, mode, opts.k) for d in sims]
    summary = {"system": system, "mode": mode, **summarise(records, k=opts.k, turns=opts.turns),
               "seeker": seeker.model_id, "seeker_requests": counts["requests"], "seeker_requests_sent": counts["sent"],
               "seconds": round(seconds, 1), "seconds_per_dialogue": round(seconds / len(sims), 2)}
    write_jsonl(out, records)
    write_json(summary_out, summary)
    log.info("interactive %s/%s: %s", system, mode, json.dumps(summary))


def _model_responder(manifest, system: str, k: int):
    from .system import ChatSystem

    chat = ChatSystem(manifest, systems=[system])

    def respond(dialogues):
        out = []
        for d in dialogues:
            r = chat.respond([(t["role"], t["text"]) for t in d.turns], system=system, top_k=k)
            out.append((r.text, [x["id"] for x in r.items]))
        return out

    return respond


def _llm_responder(backend, cache_dir, linker, items: set[int], opts):
    """The LLM-only recommender: its reply, and as its ranking the catalogue's movies it names, in order."""
    from ..llm.cache import RequestCache
    from .simulate import ask_turn, llm_recommender_request

    def respond(dialogues):
        with RequestCache(cache_dir) as cache:
            counts = {"requests": 0, "sent": 0}
            texts = ask_turn(backend, cache, dialogues, lambda d, k: llm_recommender_request(d, opts, k),
                             settings=opts, stage="llm recommender", counts=counts)
        out = []
        for text in texts:
            named = [x.entity_id for x in linker.link(text) if x.kind == "movie" and x.entity_id in items]
            out.append((text, list(dict.fromkeys(named))))
        return out

    return respond


def interactive_table(summaries: list, *, out) -> None:
    rows = [read_json(p) for p in summaries]
    write_csv(out, rows)
    log.info("interactive table: %d rows", len(rows))


def interactive_dialogues(dialogues: list, *, out, per_system: int) -> None:
    """An HTML page for the report: the first ``per_system`` dialogues of each mode, one column per system,
    side by side, with the success turn and the targets."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    systems: list[str] = []
    for path in dialogues:
        for _, r in iter_jsonl(path, expected="a simulated dialogue"):
            by_key.setdefault((r["mode"], r["dialog_id"]), {})[r["system"]] = r
            if r["system"] not in systems:
                systems.append(r["system"])
    parts = ["<html><head><meta charset='utf-8'><style>td{vertical-align:top;padding:4px;border:1px solid #ccc;"
             "font-size:12px;max-width:28em} .u{color:#174ea6} .hit{background:#e6f4ea}</style></head><body>"]
    shown: dict[str, int] = {}
    for (mode, dialog_id), runs in by_key.items():
        if shown.get(mode, 0) >= per_system:
            continue
        shown[mode] = shown.get(mode, 0) + 1
        first = next(iter(runs.values()))
        parts.append(f"<h3>{html.escape(mode)}: dialogue {html.escape(dialog_id)}, targets "
                     f"{html.escape('; '.join(first['target_names']))}</h3><table><tr>")
        parts += [f"<th>{html.escape(s)} (success at turn {runs[s]['success_turn'] if s in runs else '-'})</th>"
                  for s in systems]
        parts.append("</tr><tr>")
        for s in systems:
            cells = []
            for t in (runs[s]["turns"] if s in runs else []):
                cls = "u" if t["role"] == "user" else ("hit" if t.get("hit") else "")
                cells.append(f"<p class='{cls}'><b>{'seeker' if t['role'] == 'user' else s}:</b> "
                             f"{html.escape(t['text'])}</p>")
            parts.append(f"<td>{''.join(cells)}</td>")
        parts.append("</tr></table>")
    parts.append("</body></html>")
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
