"""The generator's corpus without reviews (``generation.corpus: dialogues``): the recommender turns of the
training dialogues, each a knowledge prompt of the movie it recommends and the human response as target.

The ECR release's IMDb reviews are what the paper trains its generator on (Section 4.3); a run without them
(UniCRS's label-free files, the real sample) has only the dialogues. Each recommender turn that recommends a
movie becomes one row in the review corpus's format (``knowledge.REVIEW_SCHEMA``), so the generator, its
prompt and its inference are unchanged:

- Movie Name: the first movie the turn recommends;
- Related Entities and Related Knowledge from KG: the movie's one-hop KG neighbours over
  ``knowledge.relations`` (the same lists the test prompts read from ``movie_knowledge.parquet``, which this
  corpus builds from the KG instead of from reviews);
- First Sentence: the conversation module's u_r for that turn (at inference too), not a template;
- target: the human response of the turn, movie names written out.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from .knowledge import MOVIE_KNOWLEDGE_SCHEMA, REVIEW_SCHEMA

DIALOGUE_SCHEMA = REVIEW_SCHEMA.append(pa.field("first_sentence", pa.string()))  # u_r of the turn


def movie_knowledge_from_kg(movies: list[int], names: dict[int, str],
                            neighbours: dict[int, list[tuple[int, str]]]) -> list[dict]:
    """Per movie, its KG neighbours as the related entities and its one-hop pairs (MOVIE_KNOWLEDGE_SCHEMA)."""
    rows = []
    for m in sorted(set(movies)):
        pairs = neighbours.get(m, [])
        rows.append({"movie": m, "movie_name": names.get(m, ""), "entities": list(dict.fromkeys(e for e, _ in pairs)),
                     "neighbour_entities": [e for e, _ in pairs], "neighbour_relations": [r for _, r in pairs],
                     "n_reviews": 0})
    return rows


def dialogue_rows(rec: pa.Table, u_r: dict[tuple[str, int], str], names: dict[int, str],
                  neighbours: dict[int, list[tuple[int, str]]], *, split: str) -> tuple[list[dict], dict]:
    """One row per recommender turn that recommends a movie and has a response text and a u_r; the counts of
    the turns left out, by reason."""
    rows, counts = [], {"turns": 0, "no_response_text": 0, "no_u_r": 0, "kept": 0}
    seen = set()
    for r in rec.to_pylist():
        key = (r["dialog_id"], int(r["turn"]))
        if key in seen or not r["rec"]:
            continue
        seen.add(key)
        counts["turns"] += 1
        text = " ".join((r.get("resp_text") or "").split())
        if not text:
            counts["no_response_text"] += 1
            continue
        if key not in u_r:
            counts["no_u_r"] += 1
            continue
        movie = int(r["rec"][0])
        pairs = neighbours.get(movie, [])
        rows.append({"review_id": f"{split}/{key[0]}/{key[1]}", "movie": movie, "movie_name": names.get(movie, ""),
                     "title": "", "content": text, "votes": 0,
                     "entities": list(dict.fromkeys(e for e, _ in pairs)),
                     "relation_entities": [e for e, _ in pairs], "relations": [rel for _, rel in pairs],
                     "first_sentence": u_r[key]})
    counts["kept"] = len(rows)
    return rows, counts


def build_corpus(rec_paths: dict, responses_paths: dict, items, subkg: dict, relation2id: dict,
                 relations: list[str]) -> tuple[dict[str, list[dict]], list[dict], dict]:
    """(rows per split, movie knowledge of every movie the dialogues name, report)."""
    from ..recommend.training import load_responses
    from .knowledge import one_hop

    it = pq.read_table(items, columns=["entity_id", "name"])
    names = {e: n for e, n in zip(it.column("entity_id").to_pylist(), it.column("name").to_pylist()) if n}
    neighbours = one_hop(subkg, relation2id, tuple(relations))
    out, report = {}, {"relations": list(relations)}
    for split, path in rec_paths.items():
        rows, counts = dialogue_rows(pq.read_table(path), load_responses(responses_paths[split]), names, neighbours,
                                     split=split)
        out[split] = rows
        report[split] = counts
        report[f"{split}_with_kg_knowledge"] = sum(bool(r["relations"]) for r in rows)
    movies = movie_knowledge_from_kg(list(names), names, neighbours)
    report["movies"] = len(movies)
    report["movies_with_kg_knowledge"] = sum(bool(m["neighbour_entities"]) for m in movies)
    return out, movies, report


__all__ = ["DIALOGUE_SCHEMA", "MOVIE_KNOWLEDGE_SCHEMA", "build_corpus", "dialogue_rows", "movie_knowledge_from_kg"]
