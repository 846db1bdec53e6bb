"""Review knowledge keyed by entity ids: which KG entities and relations each review talks about.

Re-implements ``imdb_review_entity_filter.py`` (ECR_SPEC 3.6) on the entity-linked review file (ECR_SPEC 1.3),
fixing ECR_SPEC 8.21. Differences from the reference, and why:

- Everything is keyed by entity ids, never by names. The reference looked movies up by title without year
  (remakes collide, a missing title raises KeyError) and keyed ``mv2e_review`` by that title. Here the caller
  maps each ReDial name to its movie entity id; unmapped names and unknown URIs are counted, never raised.
- A review entity counts as a KG neighbour of the movie only on an exact id match. The reference tested whether
  the entity's *name* is a substring of a neighbour's name, so short names ("Tom") matched many neighbours.
- A candidate is excluded as "the movie itself" when it is the movie's id or its name equals the title. The
  reference excluded every entity whose name contains the title, which for short titles ("Up", "It") removes
  unrelated entities.
- ``entity_name`` reads the text after ``resource/`` (else after the last ``/``) instead of chopping the last
  character, so URIs without ``<>`` or with ``/`` inside the name are handled, and only a trailing
  ``(...)`` is stripped (the reference cut at the first ``(``).
- Scores are sorted descending with a stable sort and all count ties are broken by entity id, so the output
  does not depend on dict or set order.
- A neighbour linked to the movie by several relations (a writer-director) contributes one pair per relation;
  the reference's ``{name: relation}`` dict kept only one of them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..errors import InputError

# The relations ECR grounds reviews on (ECR_SPEC 3.6), in the order neighbours are listed.
ONE_HOP_RELATIONS = ("starring", "writer", "productionCompany", "director", "musicComposer")

REVIEW_SCHEMA = pa.schema([
    ("review_id", pa.string()),  # f"{movie id}-{index among that movie's reviews}"
    ("movie", pa.int64()),
    ("movie_name", pa.string()),  # ReDial name "Title (Year)"
    ("title", pa.string()),
    ("content", pa.string()),
    ("votes", pa.int64()),
    ("entities", pa.list_(pa.int64())),  # final review entities (ECR's e_review)
    ("relation_entities", pa.list_(pa.int64())),  # KG neighbours of the movie named in the review ...
    ("relations", pa.list_(pa.string())),  # ... and their relation names (parallel; ECR's e_relation)
])

MOVIE_KNOWLEDGE_SCHEMA = pa.schema([
    ("movie", pa.int64()),
    ("movie_name", pa.string()),
    ("entities", pa.list_(pa.int64())),  # per-movie review entity list (ECR's mv2e_review)
    ("neighbour_entities", pa.list_(pa.int64())),  # every one-hop pair of the movie ...
    ("neighbour_relations", pa.list_(pa.string())),  # ... (parallel)
    ("n_reviews", pa.int32()),
])


@dataclass(frozen=True)
class ReviewKnowledge:
    """The ``knowledge`` config section: how review entities are kept (:func:`annotate_reviews`)."""

    confidence: str  # the review file's entity list to read, e.g. content_e_0.1
    relations: list[str]  # the one-hop relations a review's KG neighbours are found by
    min_global_count: int
    max_movies_per_entity: int
    min_name_length: int
    min_movie_count: int
    stop_words: str | None = None  # a word list file; None: the list shipped with ecrflow


def load_stop_words(path=None) -> set[str]:
    """One word per line (lower-cased); ``None`` reads the list shipped with ecrflow (English function words
    plus "movie", "film" and the like: the reference's stop_words.txt was never published, ECR_SPEC 8.26)."""
    if path is None:
        from importlib.resources import files

        text = files("ecrflow.generate").joinpath("stop_words.txt").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return {w.strip().lower() for w in text.splitlines() if w.strip()}


_TRAILING_PAREN = re.compile(r"\s*\([^()]*\)\s*$")
_MAX_EXAMPLES = 10


def _strip_paren(name: str) -> str:
    return _TRAILING_PAREN.sub("", name).strip()


def entity_name(uri: str, strip_paren: bool = True) -> str:
    """Readable name of a DBpedia resource URI.

    ``<http://dbpedia.org/resource/Black_Panther_(film)>`` -> "Black Panther" (``strip_paren``) or
    "Black Panther (film)". The name is the text after ``resource/`` when present (so ``AC/DC`` survives),
    else after the last ``/``; angle brackets are optional.
    """
    s = uri.strip().removeprefix("<").removesuffix(">")
    marker = "resource/"
    if marker in s:
        s = s[s.index(marker) + len(marker):]
    else:
        s = s.rsplit("/", 1)[-1]
    s = s.replace("_", " ").strip()
    return _strip_paren(s) if strip_paren else s


def relation_name(uri: str) -> str:
    """``<http://dbpedia.org/ontology/starring>`` -> "starring"; a bare name (``self_loop``) is returned as is."""
    s = uri.strip().removeprefix("<").removesuffix(">")
    return s.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def one_hop(subkg: Mapping[str, Iterable], relation2id: Mapping[str, int],
            relations: Iterable[str] = ONE_HOP_RELATIONS) -> dict[int, list[tuple[int, str]]]:
    """Per head entity id, its ``(neighbour id, relation name)`` pairs over ``relations`` only.

    Only edges whose head is the movie are used (UniCRS stores the movie as the head of its starring, director,
    ... edges). Pairs are de-duplicated and ordered by the position of the relation in ``relations``, then by
    neighbour id, so the result does not depend on the order of the subkg file. Heads without any such pair
    are absent. Relation ids not in ``relation2id`` are ignored.
    """
    order = {name: i for i, name in enumerate(relations)}
    rel_of = {idx: relation_name(uri) for uri, idx in relation2id.items()}
    wanted = {idx: name for idx, name in rel_of.items() if name in order}
    out: dict[int, list[tuple[int, str]]] = {}
    for head, edges in subkg.items():
        pairs = set()
        for edge in edges:
            rel, tail = int(edge[0]), int(edge[1])
            if rel in wanted:
                pairs.add((tail, wanted[rel]))
        if pairs:
            out[int(head)] = sorted(pairs, key=lambda p: (order[p[1]], p[0]))
    return out


def _review_text(content, source: str, movie: str, index: int) -> str:
    """The review text: ``content`` is a string (crawler output) or a list whose first element is the text
    (the entity-linked file, which ``process_empthetic`` reads as ``content[0]``)."""
    if isinstance(content, list) and content:
        content = content[0]
    if not isinstance(content, str):
        raise InputError(source, f"movie {movie!r}, review {index}: 'content' must be a string or a list whose "
                                 f"first element is the review text, got {type(content).__name__}")
    return content


def _votes(value, source: str, movie: str, index: int) -> int:
    if value is None:
        return 0  # a crawler record without a count: treat as no helpful votes
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.replace(",", "").strip().isdigit():
        return int(value.replace(",", ""))  # the crawler read the count off the page ("1,234")
    raise InputError(source, f"movie {movie!r}, review {index}: 'votes' must be an integer, got {value!r}")


def _annotations(review: dict, key: str, source: str, movie: str, index: int) -> list[tuple[str, float]]:
    pairs = review.get(key)
    if pairs is None:
        return []
    if not isinstance(pairs, list):
        raise InputError(source, f"movie {movie!r}, review {index}: {key!r} must be a list of [uri, score] pairs")
    out = []
    for p in pairs:
        if not (isinstance(p, (list, tuple)) and len(p) >= 2 and isinstance(p[0], str)):
            raise InputError(source, f"movie {movie!r}, review {index}: {key!r} entry {p!r} is not [uri, score]")
        try:
            out.append((p[0], float(p[1])))
        except (TypeError, ValueError):
            raise InputError(source, f"movie {movie!r}, review {index}: score {p[1]!r} is not a number") from None
    # Stable sort: equal scores keep file order (the reference's sort-then-reverse flipped them).
    return sorted(out, key=lambda p: -p[1])


def _by_count(counts: Mapping[int, int]) -> list[int]:
    """Entity ids by descending count, ties by id."""
    return sorted(counts, key=lambda e: (-counts[e], e))


def annotate_reviews(reviews: dict, *, entity2id: Mapping[str, int], movie_ids: Mapping[str, int],
                     neighbours: Mapping[int, list[tuple[int, str]]], stop_words: Collection[str],
                     confidence_key: str = "content_e_0.1", min_global_count: int = 20,
                     max_movies_per_entity: int = 1970, min_name_length: int = 6, min_movie_count: int = 2,
                     source: str = "movie_reviews") -> tuple[list[dict], list[dict], dict]:
    """Ground each review in KG entities and relations; return ``(review rows, movie rows, report)``.

    ``reviews`` is the entity-linked review dict (ECR_SPEC 1.3), ``movie_ids`` maps a ReDial movie name to its
    movie entity id, ``neighbours`` is :func:`one_hop`'s output, ``stop_words`` holds lower-case words, and
    ``source`` names the file in error messages. Steps (ECR_SPEC 3.6, keyed by ids; see the module docstring):

    1. Per review, entities of ``confidence_key`` by descending score. A one-hop neighbour of the movie goes to
       the review's relations (each pair once); any other entity becomes a candidate unless it is already
       one, its paren-stripped lower-cased name is a stop word, or it is the movie (same id or same name as
       the title without year).
    2. ``e_cnt[movie][e]`` = the movie's reviews with candidate e, ``total_cnt[e]`` over all movies,
       ``e2mv[e]`` = movies with e.
    3. Global whitelist: entities by descending ``total_cnt`` until one falls below ``min_global_count``,
       skipping those in more than ``max_movies_per_entity`` movies or with a name shorter than
       ``min_name_length`` characters (the reference's "length <= 5").
    4. Per-movie list: whitelisted entities with ``e_cnt >= min_movie_count`` by descending count; else the
       movie's most frequent whitelisted entity; else its most frequent entity.
    5. A review keeps the candidates in its movie's list, or its first candidate if none is.

    Several ReDial names mapped to one movie id are pooled into one movie (its name is the first one met).
    Raises :class:`InputError` on a malformed structure, naming the movie and review index.
    """
    if not isinstance(reviews, dict):
        raise InputError(source, f"expected a JSON object {{movie name: [review, ...]}}, got {type(reviews).__name__}")
    stop = {w.lower() for w in stop_words}

    report: dict = {
        "movies_in_file": len(reviews), "movies_mapped": 0, "movies_unmapped": 0, "unmapped_examples": [],
        "movies_sharing_an_id": 0, "reviews_in": 0, "reviews_unmapped": 0, "reviews_out": 0,
        "reviews_without_annotations": 0, "uris_unknown": 0, "uris_unknown_distinct": 0,
        "unknown_uri_examples": [],
    }
    unknown_uris: Counter = Counter()
    name_of_entity: dict[int, str] = {}  # paren-stripped, for the length test
    movie_name: dict[int, str] = {}
    movie_reviews: dict[int, list[dict]] = {}

    for mv_name, review_list in reviews.items():
        if not isinstance(review_list, list):
            raise InputError(source, f"movie {mv_name!r}: expected a list of reviews, got {type(review_list).__name__}")
        report["reviews_in"] += len(review_list)
        mid = movie_ids.get(mv_name)
        if mid is None:
            report["movies_unmapped"] += 1
            report["reviews_unmapped"] += len(review_list)
            if len(report["unmapped_examples"]) < _MAX_EXAMPLES:
                report["unmapped_examples"].append(mv_name)
            continue
        mid = int(mid)
        report["movies_mapped"] += 1
        if mid in movie_name:
            report["movies_sharing_an_id"] += 1
        movie_name.setdefault(mid, mv_name)
        rows = movie_reviews.setdefault(mid, [])
        title_key = _strip_paren(mv_name).casefold()
        neigh_rel: dict[int, list[str]] = defaultdict(list)
        for nid, rel in neighbours.get(mid, ()):
            neigh_rel[nid].append(rel)

        for i, review in enumerate(review_list):
            if not isinstance(review, dict):
                raise InputError(source, f"movie {mv_name!r}, review {i}: expected an object, "
                                         f"got {type(review).__name__}")
            if "content" not in review:
                raise InputError(source, f"movie {mv_name!r}, review {i}: no 'content' (review text)")
            text = _review_text(review["content"], source, mv_name, i)
            title = review.get("title") or ""
            if not isinstance(title, str):
                raise InputError(source, f"movie {mv_name!r}, review {i}: 'title' must be a string")
            votes = _votes(review.get("votes"), source, mv_name, i)
            if confidence_key not in review:
                report["reviews_without_annotations"] += 1
            rel_pairs: list[tuple[int, str]] = []
            cands: list[int] = []
            for uri, _score in _annotations(review, confidence_key, source, mv_name, i):
                eid = entity2id.get(uri)
                if eid is None:
                    unknown_uris[uri] += 1
                    continue
                eid = int(eid)
                if eid in neigh_rel:
                    for rel in neigh_rel[eid]:
                        if (eid, rel) not in rel_pairs:
                            rel_pairs.append((eid, rel))
                    continue
                name = entity_name(uri, True)
                name_of_entity.setdefault(eid, name)
                if eid in cands or eid == mid or name.lower() in stop or name.casefold() == title_key:
                    continue
                cands.append(eid)
            rows.append({
                "review_id": f"{mid}-{len(rows)}", "movie": mid, "movie_name": mv_name, "title": title,
                "content": text, "votes": votes, "entities": cands,
                "relation_entities": [e for e, _ in rel_pairs], "relations": [r for _, r in rel_pairs],
            })

    # Corpus statistics over the candidates.
    e_cnt: dict[int, Counter] = {mid: Counter(e for r in rows for e in r["entities"])
                                 for mid, rows in movie_reviews.items()}
    total_cnt: Counter = Counter()
    e2mv: Counter = Counter()
    for counts in e_cnt.values():
        total_cnt.update(counts)
        e2mv.update(counts.keys())

    whitelist: list[int] = []
    for e in _by_count(total_cnt):
        if total_cnt[e] < min_global_count:
            break
        if e2mv[e] > max_movies_per_entity or len(name_of_entity[e]) < min_name_length:
            continue
        whitelist.append(e)
    allowed = set(whitelist)

    fallback_whitelist = fallback_frequent = no_entities = 0
    movie_list: dict[int, list[int]] = {}
    for mid, counts in e_cnt.items():
        ranked = _by_count(counts)
        chosen = [e for e in ranked if e in allowed and counts[e] >= min_movie_count]
        if not chosen:
            first_allowed = [e for e in ranked if e in allowed][:1]
            if first_allowed:
                chosen, fallback_whitelist = first_allowed, fallback_whitelist + 1
            elif ranked:
                chosen, fallback_frequent = ranked[:1], fallback_frequent + 1
            else:
                no_entities += 1
        movie_list[mid] = chosen

    review_rows: list[dict] = []
    reviews_without_entities = 0
    for mid, rows in movie_reviews.items():
        keep = set(movie_list[mid])
        for row in rows:
            cands = row["entities"]
            final = [e for e in cands if e in keep] or cands[:1]
            row["entities"] = final
            if not final:
                reviews_without_entities += 1
            review_rows.append(row)

    movie_rows = []
    for mid in sorted(movie_reviews):
        pairs = list(neighbours.get(mid, ()))
        movie_rows.append({
            "movie": mid, "movie_name": movie_name[mid], "entities": movie_list[mid],
            "neighbour_entities": [e for e, _ in pairs], "neighbour_relations": [r for _, r in pairs],
            "n_reviews": len(movie_reviews[mid]),
        })

    report.update({
        "reviews_out": len(review_rows),
        "reviews_without_entities": reviews_without_entities,
        "reviews_with_relations": sum(1 for r in review_rows if r["relations"]),
        "uris_unknown": sum(unknown_uris.values()),
        "uris_unknown_distinct": len(unknown_uris),
        "unknown_uri_examples": sorted(unknown_uris)[:_MAX_EXAMPLES],
        "candidate_entities": len(total_cnt),
        "whitelist_size": len(whitelist),
        "whitelist": whitelist,
        "movies_fallback_whitelist_first": fallback_whitelist,
        "movies_fallback_most_frequent": fallback_frequent,
        "movies_without_entities": no_entities,
    })
    return review_rows, movie_rows, report
