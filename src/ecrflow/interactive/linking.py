"""Entity linking of free text: movie titles, people and genres in what a user types, linked to the KG's
entity ids, so that a conversation with a person (``ecrflow chat``, the server, a simulated seeker) reaches
the recommender in the form the ReDial files give it (a message's ``movie`` and ``entity`` lists).

The name index holds every entity of ``entity2id.json`` under its DBpedia name and every movie of the
dialogues under its ReDial name ("Title (Year)"), normalised the same way as the text: lower case, accents
and apostrophes dropped, "&" read as "and", punctuation as spaces, a trailing "(Year)" or "(film)" removed
(the year is kept to choose between remakes). Matching is longest span first, exact, then fuzzy (RapidFuzz's
``ratio`` over the names that share a word with the span, for misspellings such as "Schwazzenegger").
A name of one word must be capitalised, and not open a sentence, unless it is a genre: "frozen", "up" and
"Hope you like it" are words before they are titles; a name of one content word in lower case ("the help",
"the matrix") is not linked unless a year follows (on the training messages, linking those cost 2 points of
precision and gained no recall). Genre words in other forms ("romantic", "comedies", "sci fi") are in
:data:`GENRE_FORMS`; DBpedia's genre entities ("Horror_film") are also found by their head ("horror"). Ambiguous names go to the entity with the given year, else the one mentioned most in
the training dialogues.

Measured on real ReDial messages, whose links the release gives (rule ``entity_linking``:
results/<run>/tables/linking.csv).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..generate.knowledge import entity_name, load_stop_words

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|&")
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_NAME_YEAR = re.compile(r"\s*\(((?:19|20)\d\d)\)\s*$")

# Other forms of the KG's genre names, as users write them; applied only where the genre is in entity2id.
GENRE_FORMS = {
    "romantic": "romance", "romcom": "romance", "comedies": "comedy", "horrors": "horror", "thrillers": "thriller",
    "dramas": "drama", "musicals": "musical", "documentaries": "documentary", "animated": "animation",
    "cartoon": "animation", "cartoons": "animation", "westerns": "western", "sci fi": "sci-fi",
    "scifi": "sci-fi", "science fiction": "sci-fi", "mysteries": "mystery", "war movies": "war",
    "actions": "action", "fantasies": "fantasy", "biopic": "biography",
}


def fold(text: str) -> str:
    """Lower case without accents or apostrophes, "&" as "and"."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return text.replace("&", " and ").replace("'", "").replace("’", "").lower()


def name_tokens(name: str) -> list[str]:
    return _TOKEN.findall(fold(name))


@dataclass(frozen=True)
class Link:
    """One linked span: ``start``/``end`` index the original text."""

    entity_id: int
    uri: str
    name: str
    kind: str  # movie | entity
    start: int
    end: int
    surface: str
    score: float  # 100 for an exact match, the fuzzy score otherwise

    def to_json(self) -> dict:
        return {"id": self.entity_id, "name": self.name, "kind": self.kind, "surface": self.surface,
                "score": round(self.score, 1)}


@dataclass(frozen=True)
class _Entry:
    entity_id: int
    year: str | None
    genre: bool  # a lower-case KG name (comedy, scary): may match a lower-case word


class EntityLinker:
    """``entity2id``: URI -> id; ``movies``: id -> ReDial name for the movies of the dialogues; ``prior``:
    id -> how often the training dialogues mention it (ties between equal names)."""

    def __init__(self, entity2id: Mapping[str, int], movies: Mapping[int, str], prior: Mapping[int, int] | None = None,
                 *, fuzzy_cutoff: float = 90.0, max_words: int = 12, stop_words: Iterable[str] | None = None):
        self.uri = {i: u for u, i in entity2id.items()}
        self.movies = dict(movies)
        self.prior = dict(prior or {})
        self.fuzzy_cutoff = fuzzy_cutoff
        self.max_words = max_words
        self.stop = set(stop_words) if stop_words is not None else load_stop_words()
        self.index: dict[tuple[str, ...], list[_Entry]] = defaultdict(list)
        for uri, eid in entity2id.items():
            raw = entity_name(uri, strip_paren=False)
            self._add(raw, eid, genre=raw == raw.lower() and not any(ch.isdigit() for ch in raw))
            if raw.endswith(" film") and raw[:-5].strip():  # DBpedia's genres: Horror_film, Science_fiction_film
                self._add(raw[:-5], eid, genre=True)
        for eid, name in self.movies.items():
            if name:
                self._add(name, eid, genre=False)
        for form, genre in GENRE_FORMS.items():
            for e in list(self.index.get(tuple(name_tokens(genre)), [])):
                if e.genre:
                    self.index[tuple(name_tokens(form))].append(e)
        # fuzzy candidates: names of two words or more, found by any of their words that is not a stop word
        self.by_word: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        for key in self.index:
            if len(key) >= 2:
                for w in key:
                    if w not in self.stop and len(w) > 2:
                        self.by_word[w].add(key)

    @classmethod
    def from_files(cls, entity2id_path, items_path, **kw) -> "EntityLinker":
        import pyarrow.parquet as pq

        from ..io import read_json

        items = pq.read_table(items_path, columns=["entity_id", "name", "mentions_train"]).to_pylist()
        return cls(read_json(entity2id_path), {r["entity_id"]: r["name"] for r in items if r["name"]},
                   {r["entity_id"]: r["mentions_train"] for r in items}, **kw)

    def _add(self, name: str, eid: int, genre: bool) -> None:
        m = _NAME_YEAR.search(name)
        year = m.group(1) if m else None
        base = re.sub(r"\s*\([^()]*\)\s*$", "", name)  # "(film)", "(2004)", "(actor)"
        key = tuple(name_tokens(base))
        if key and all(e.entity_id != eid for e in self.index[key]):
            self.index[key].append(_Entry(eid, year, genre))

    def _choose(self, entries: list[_Entry], year: str | None) -> _Entry:
        if year:
            dated = [e for e in entries if e.year == year]
            entries = dated or entries
        return max(entries, key=lambda e: (e.entity_id in self.movies, self.prior.get(e.entity_id, 0), -e.entity_id))

    def _accept(self, entries: list[_Entry], words: list[str], surfaces: list[str], sentence_start: bool,
                dated: bool) -> list[_Entry]:
        """The entries a span may link to, by how it is written: a genre word in any case; otherwise a span
        followed by a year, or one that reads as a name (capitalised, and for one word not the first of a
        sentence nor a stop word): "Yes", "Hope" and "the help" are words before they are titles."""
        lower = all(s == s.lower() for s in surfaces)
        genres = [e for e in entries if e.genre]
        if len(words) == 1 and lower:
            return genres
        if dated:
            return entries
        if len(words) == 1:
            named = words[0] not in self.stop and len(words[0]) > 1 and not sentence_start
            return entries if named else genres
        if lower and sum(w not in self.stop for w in words) <= 1:
            return genres
        return entries

    def link(self, text: str) -> list[Link]:
        """Non-overlapping links in text order."""
        spans = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        words = [fold(s).strip() for _, _, s in spans]
        taken = [False] * len(spans)
        found: list[tuple[int, int, _Entry, float]] = []
        for n in range(min(self.max_words, len(spans)), 0, -1):  # exact, longest first
            for i in range(len(spans) - n + 1):
                if any(taken[i:i + n]):
                    continue
                entries = self.index.get(tuple(words[i:i + n]))
                if not entries:
                    continue
                j = i + n
                year = words[j] if j < len(words) and _YEAR.match(words[j]) else None
                if year and not any(e.year == year for e in entries) and any(
                        e.year == year for e in self.index.get(tuple(words[i + 1:j]), ())):
                    continue  # "the Scream (1996)": the shorter span holds the dated title
                start_of_sentence = i == 0 or bool(re.search(r"[.!?:]\s*$", text[spans[i - 1][1]:spans[i][0]]))
                entries = self._accept(entries, words[i:j], [s for _, _, s in spans[i:j]], start_of_sentence,
                                       year is not None)
                if not entries:
                    continue
                end = j + (1 if year else 0)
                found.append((i, end, self._choose(entries, year), 100.0))
                taken[i:end] = [True] * (end - i)
        found += self._fuzzy(words, [s for _, _, s in spans], taken)
        out = []
        for i, j, e, score in sorted(found, key=lambda f: f[0]):
            start, end = spans[i][0], spans[j - 1][1]
            kind = "movie" if e.entity_id in self.movies else "entity"
            name = self.movies.get(e.entity_id) or entity_name(self.uri[e.entity_id], strip_paren=False)
            out.append(Link(e.entity_id, self.uri[e.entity_id], name, kind, start, end, text[start:end], score))
        return out

    def _fuzzy(self, words: list[str], surfaces: list[str], taken: list[bool]) -> list[tuple[int, int, _Entry, float]]:
        from rapidfuzz import fuzz, process

        found = []
        for n in (4, 3, 2):
            for i in range(len(words) - n + 1):
                if any(taken[i:i + n]):
                    continue
                query = " ".join(words[i:i + n])
                # a misspelt name: capitalised, not starting or ending with a stop word
                if (len(query) < 8 or words[i] in self.stop or words[i + n - 1] in self.stop
                        or not any(s[:1].isupper() for s in surfaces[i:i + n])):
                    continue
                keys = {k for w in words[i:i + n] for k in self.by_word.get(w, ()) if abs(len(k) - n) <= 1}
                if not keys:
                    continue
                choices = {" ".join(k): k for k in keys}
                best = process.extractOne(query, list(choices), scorer=fuzz.ratio, score_cutoff=self.fuzzy_cutoff)
                if best is None:
                    continue
                found.append((i, i + n, self._choose(self.index[choices[best[0]]], None), float(best[1])))
                taken[i:i + n] = [True] * n
        return found

    def movie_name(self, eid: int) -> str:
        return self.movies.get(eid) or entity_name(self.uri[eid], strip_paren=False)


def gold_links(dialog_file, years: bool = True) -> list[dict]:
    """The messages of a ReDial file (``entity``/``movie`` lists as the release links them) as
    ``{"text", "movies", "entities"}``, the ``@id`` mentions replaced by the movies' names: "Title (Year)"
    as ReDial's interface inserted them, or (``years`` False) the bare title a user types."""
    from ..data.turns import normalise_utterance
    from ..io import iter_jsonl

    out = []
    for _, d in iter_jsonl(dialog_file, expected="a ReDial conversation object"):
        mentions = {k: v if years else _NAME_YEAR.sub("", v) for k, v in (d.get("movieMentions") or {}).items() if v}
        for m in d.get("messages", []):
            out.append({"text": normalise_utterance(m.get("text", ""), mentions),
                        "movies": sorted(set(m.get("movie") or [])), "entities": sorted(set(m.get("entity") or []))})
    return out


def link_scores(linker: EntityLinker, messages: list[dict], entity2id: Mapping[str, int]) -> list[dict]:
    """Micro precision, recall and F1 of the linker against the gold links, for movies, other entities and
    all, with the counts (a gold URI missing from entity2id cannot be linked: counted apart)."""
    counts = {k: {"tp": 0, "pred": 0, "gold": 0} for k in ("movie", "entity", "all")}
    gold_unknown = 0
    for m in messages:
        gold = {"movie": {entity2id[u] for u in m["movies"] if u in entity2id},
                "entity": {entity2id[u] for u in m["entities"] if u in entity2id}}
        gold_unknown += sum(u not in entity2id for u in m["movies"] + m["entities"])
        pred = {"movie": set(), "entity": set()}
        for link in linker.link(m["text"]):
            pred[link.kind].add(link.entity_id)
        # a gold movie URI outside the dialogues' movies (or the reverse) is scored where the gold puts it
        pred_all, gold_all = pred["movie"] | pred["entity"], gold["movie"] | gold["entity"]
        for kind in ("movie", "entity"):
            p = pred_all & (gold[kind] | (pred[kind] - gold_all))
            counts[kind]["tp"] += len(p & gold[kind])
            counts[kind]["pred"] += len(p)
            counts[kind]["gold"] += len(gold[kind])
        counts["all"]["tp"] += len(pred_all & gold_all)
        counts["all"]["pred"] += len(pred_all)
        counts["all"]["gold"] += len(gold_all)
    rows = []
    for kind, c in counts.items():
        p = c["tp"] / c["pred"] if c["pred"] else float("nan")
        r = c["tp"] / c["gold"] if c["gold"] else float("nan")
        f = 2 * p * r / (p + r) if c["tp"] else 0.0
        rows.append({"kind": kind, "precision": p, "recall": r, "f1": f, "true_positives": c["tp"],
                     "predicted": c["pred"], "gold": c["gold"], "messages": len(messages),
                     "gold_not_in_entity2id": gold_unknown})
    return rows
