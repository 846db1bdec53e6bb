"""A seeded, offline generator of a toy ReDial in the exact file formats of the ECR data release.

It writes ``{split}`` dialog files, ``entity2id.json``, ``relation2id.json``, ``dbpedia_subkg.json`` and an
entity-annotated review file (``movie_reviews_filted_0.1_confi.json`` format) with a learnable signal:

- every seeker has a favourite genre, says so (the genre's DBpedia entity) and names liked movies of it;
- the recommender mostly suggests movies of that genre, preferring ones that share actors, directors or
  writers with the seeker's liked movies (so the KG carries the signal), weighted by a skewed popularity
  (so a popularity baseline is not hopeless, just worse);
- sometimes the recommender suggests an off-genre movie, which the seeker mostly dislikes; feedback
  (``initiatorQuestions``) ends up near ReDial's shares (about 5 % dislike, 14 % not said), and the
  seeker's emotions follow the feedback (like/happy after a liked suggestion, negative after a disliked one,
  curious when not seen);
- reviews mention the movie's KG neighbours (actors, director, genre) and are annotated with their URIs.

ReDial's quirks are reproduced on purpose: double spaces in ``movieMentions`` names, an alias id whose name
lacks the year, consecutive messages from one sender, dialogs opened by either role, seeker messages with an
empty emotion list, message URIs missing from ``entity2id`` (dropped downstream, as UniCRS does), review
sentences with "review" or "10/10" (scrubbed later) and sentences with years such as 2010 (kept).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import EMOTIONS, SELF_LOOP, SPLITS
from ..io import atomic_path, write_json

RES = "http://dbpedia.org/resource/"
ONT = "http://dbpedia.org/ontology/"

GENRES = [
    ("Comedy_film", "comedy"), ("Horror_film", "horror"), ("Science_fiction_film", "sci-fi"),
    ("Romance_film", "romance"), ("Action_film", "action"), ("Animated_film", "animated"),
    ("Drama_(film_and_television)", "drama"), ("Thriller_(genre)", "thriller"),
]
RELATIONS = ["director", "genre", "musicComposer", "productionCompany", "starring", "writer"]
GENERIC = ["Film", "Humour", "Watch", "Time", "Gratitude", "Sound", "Cinema", "Popcorn"]
UNKNOWN = ["Hi_Records", "Israel", "Yes_(band)"]  # linked in messages, absent from entity2id

_FIRST = ["Ada", "Bram", "Cleo", "Dario", "Elin", "Faye", "Gus", "Hana", "Ivo", "Jun", "Kira", "Leon", "Mara",
          "Nils", "Oona", "Pim", "Rosa", "Sven", "Tess", "Ugo", "Vera", "Wim", "Yara", "Zeno"]
_LAST = ["Abbot", "Brandt", "Castel", "Dorn", "Eklund", "Falk", "Greer", "Holm", "Ibarra", "Jansen", "Kovac",
         "Lund", "Moreau", "Novak", "Okafor", "Perrin", "Quist", "Rahn", "Sato", "Thorne", "Ueda", "Voss"]
_ADJ = ["Dark", "Silent", "Golden", "Broken", "Hidden", "Last", "Crimson", "Frozen", "Wild", "Secret", "Lost",
        "Burning", "Midnight", "Endless", "Electric", "Paper", "Iron", "Velvet"]
_NOUN = ["Harbor", "Garden", "Signal", "Empire", "River", "Machine", "Summer", "Mirror", "Kingdom", "Road",
         "Island", "Letter", "Planet", "Storm", "Circus", "Orchard", "Tower", "Voyage", "Code", "Winter"]


@dataclass
class ToyConfig:
    """The toy dataset: the ``toy`` config section plus what the ``data`` section says of the files."""

    IGNORED = ("enabled", "small_models", "models")  # whether the toy run is on, and its tiny models (models.toy)

    seed: int = 7
    n_dialogs: dict = field(default_factory=lambda: {"train": 600, "valid": 100, "test": 100})  # per split
    n_movies: int = 160
    actors_per_genre: int = 8
    with_emotions: bool = True  # emotion labels on seeker messages, as in the ECR release
    dialog_pattern: str = "{split}_data_dbpedia_emo.jsonl"
    reviews_file: str = "movie_reviews_filted_0.1_confi.json"  # "": no review file
    max_reviews_per_movie: int = 8


@dataclass
class Movie:
    idx: int
    title: str
    year: int
    uri: str
    genre: int
    redial_id: str
    mention_name: str  # as in movieMentions (sometimes with ReDial's double space)
    name: str  # "Title (Year)", as in message movie_name
    popularity: float
    neighbours: dict = field(default_factory=dict)  # relation -> list of entity URIs
    alias_id: str | None = None  # a second ReDial id whose name lacks the year


def _uri(name: str, base: str = RES) -> str:
    return f"<{base}{name.replace(' ', '_')}>"


class ToyWorld:
    """The movies, people and KG of the toy data."""

    def __init__(self, cfg: ToyConfig, rng: np.random.Generator):
        people = [f"{f} {l}" for f in _FIRST for l in _LAST]
        rng.shuffle(people)
        take = iter(people)
        n_g = len(GENRES)
        self.actors = [[next(take) for _ in range(cfg.actors_per_genre)] for _ in range(n_g)]
        self.directors = [[next(take) for _ in range(3)] for _ in range(n_g)]
        self.writers = [[next(take) for _ in range(3)] for _ in range(n_g)]
        self.composers = [next(take) for _ in range(6)]
        self.companies = [f"{n} Pictures" for n in ["Northlight", "Bluefin", "Oakhouse", "Starling", "Redgate"]]

        titles = [f"The {a} {n}" for a in _ADJ for n in _NOUN]
        rng.shuffle(titles)
        self.movies: list[Movie] = []
        used: dict[str, int] = {}
        for i in range(cfg.n_movies):
            g = i % n_g
            # A few remakes share a title with an earlier movie (title collisions are real in ReDial).
            title = self.movies[i - n_g].title if i % 37 == 36 else titles[i]
            year = int(rng.integers(1970, 2019))
            used[title] = used.get(title, 0) + 1
            uri_name = title if used[title] == 1 else f"{title} ({year} film)"
            name = f"{title} ({year})"
            mention = f"{title}  ({year})" if rng.random() < 0.3 else name
            m = Movie(i, title, year, _uri(uri_name), g, str(100000 + 13 * i), mention, name, 0.0)
            m.neighbours = {
                "genre": [_uri(GENRES[g][0])],
                "starring": [_uri(a) for a in rng.choice(self.actors[g], size=int(rng.integers(2, 4)), replace=False)],
                "director": [_uri(str(rng.choice(self.directors[g])))],
                "writer": [_uri(str(rng.choice(self.writers[g])))],
                "musicComposer": [_uri(str(rng.choice(self.composers)))],
                "productionCompany": [_uri(str(rng.choice(self.companies)))],
            }
            if rng.random() < 0.05:
                m.alias_id = str(200000 + 13 * i)
            self.movies.append(m)
        # Skewed popularity inside each genre (Zipf-like over a random rank).
        for g in range(n_g):
            ms = [m for m in self.movies if m.genre == g]
            ranks = rng.permutation(len(ms)) + 1
            for m, r in zip(ms, ranks):
                m.popularity = 1.0 / r ** 0.9
        self.by_genre = [[m for m in self.movies if m.genre == g] for g in range(n_g)]

        entities = {m.uri for m in self.movies}
        for m in self.movies:
            for uris in m.neighbours.values():
                entities.update(uris)
        entities.update(_uri(x) for x in GENERIC)
        self.entity2id = {u: i for i, u in enumerate(sorted(entities))}  # deterministic ids
        self.relation2id = {_uri(r, ONT): i for i, r in enumerate(RELATIONS)}
        self.relation2id[SELF_LOOP] = len(RELATIONS)

    def subkg(self) -> dict[str, list[list[int]]]:
        self_loop = self.relation2id[SELF_LOOP]
        kg = {str(i): [[self_loop, i]] for i in self.entity2id.values()}
        for m in self.movies:
            h = self.entity2id[m.uri]
            for rel, uris in m.neighbours.items():
                for u in uris:
                    kg[str(h)].append([self.relation2id[_uri(rel, ONT)], self.entity2id[u]])
        return kg

    def shared_neighbours(self, a: Movie, b: Movie) -> int:
        na = {u for k, v in a.neighbours.items() if k in ("starring", "director", "writer") for u in v}
        nb = {u for k, v in b.neighbours.items() if k in ("starring", "director", "writer") for u in v}
        return len(na & nb)


def _emotion_dict(rng: np.random.Generator, labels: list[str]) -> dict[str, float]:
    """All nine labels with probabilities, mass on ``labels``, sorted descending (the release's layout)."""
    p = rng.dirichlet(np.full(len(EMOTIONS), 0.3)) * 0.12
    main = rng.dirichlet(np.full(len(labels), 4.0)) * 0.88
    for lab, w in zip(labels, main):
        p[EMOTIONS.index(lab)] += w
    order = np.argsort(-p, kind="stable")
    return {EMOTIONS[i]: float(p[i]) for i in order}


class DialogWriter:
    def __init__(self, world: ToyWorld, cfg: ToyConfig, rng: np.random.Generator, conv_id: int):
        self.w, self.cfg, self.rng = world, cfg, rng
        self.seeker, self.recommender = 1000 + 2 * conv_id, 1001 + 2 * conv_id
        self.conv_id = conv_id
        self.messages: list[dict] = []
        self.mentions: dict[str, str] = {}
        self.questions: dict[str, dict] = {}
        self.t = 0

    def mention(self, m: Movie, alias: bool = False) -> str:
        if alias and m.alias_id:
            self.mentions[m.alias_id] = m.title + " "
            return m.alias_id
        self.mentions[m.redial_id] = m.mention_name
        return m.redial_id

    def say(self, seeker: bool, text: str, movies=(), entities=(), emotion: list[str] | None = None, alias=False):
        ids = [self.mention(m, alias) for m in movies]
        text = text.format(*[f"@{i}" for i in ids])
        ents = [_uri(e) if not e.startswith("<") else e for e in entities]
        if self.rng.random() < 0.03:
            ents.append(_uri(str(self.rng.choice(UNKNOWN))))
        msg = {
            "timeOffset": self.t, "text": text,
            "senderWorkerId": self.seeker if seeker else self.recommender,
            "messageId": 500000 + 50 * self.conv_id + len(self.messages),
            "entity": ents, "entity_name": [e[len(RES) + 1:-1].replace("_", " ") for e in ents],
            "movie": [m.uri for m in movies],
            "movie_name": [m.title if alias and m.alias_id else m.name for m in movies],
            "word_name": sorted({w.strip("?!.,").lower() for w in text.split() if len(w) > 4 and "@" not in w}),
        }
        if seeker and self.cfg.with_emotions:
            msg["emotion"] = _emotion_dict(self.rng, emotion) if emotion else []
        self.t += int(self.rng.integers(5, 40))
        self.messages.append(msg)

    def ask(self, m: Movie, suggested: int, seen: int, liked: int, alias: bool = False) -> None:
        rid = m.alias_id if alias and m.alias_id else m.redial_id
        if self.rng.random() < 0.03:
            return  # a movie missing from initiatorQuestions counts as "not said"
        self.questions[rid] = {"suggested": suggested, "seen": seen, "liked": liked}


def _pick(rng, movies: list[Movie], weights) -> Movie:
    w = np.asarray(weights, dtype=float)
    return movies[int(rng.choice(len(movies), p=w / w.sum()))]


def make_dialog(world: ToyWorld, cfg: ToyConfig, rng: np.random.Generator, conv_id: int) -> dict:
    d = DialogWriter(world, cfg, rng, conv_id)
    n_g = len(GENRES)
    g = int(rng.integers(n_g))
    g_bad = int((g + rng.integers(1, n_g)) % n_g)
    genre_uri, genre_word = _uri(GENRES[g][0]), GENRES[g][1]
    pool = world.by_genre[g]
    seeds = []
    for _ in range(int(rng.integers(1, 3))):
        cand = [m for m in pool if m not in seeds]
        seeds.append(_pick(rng, cand, [m.popularity for m in cand]))

    if rng.random() < 0.4:
        d.say(False, "Hi! What kind of movies do you like?", entities=["Film"] if rng.random() < 0.5 else [])
    alias = bool(seeds[0].alias_id) and rng.random() < 0.5
    if rng.random() < 0.3:  # two consecutive seeker messages
        d.say(True, f"Hello, I am in the mood for a good {genre_word} movie", entities=[genre_uri], emotion=["curious"])
        d.say(True, "I really liked {0}", movies=seeds[:1], emotion=["like"], alias=alias)
    else:
        d.say(True, f"I love {genre_word} movies. I really liked {{0}}", movies=seeds[:1], entities=[genre_uri],
              emotion=["like", "curious"], alias=alias)
    d.ask(seeds[0], suggested=0, seen=1, liked=1, alias=alias)
    if len(seeds) > 1:
        d.say(True, "and {0} too", movies=seeds[1:], emotion=["like", "happy"] if rng.random() < 0.7 else None)
        d.ask(seeds[1], suggested=0, seen=1, liked=1)

    mentioned = set(id(m) for m in seeds)
    for _ in range(int(rng.integers(2, 4))):
        off = rng.random() < 0.1
        cand = [m for m in (world.by_genre[g_bad] if off else pool) if id(m) not in mentioned]
        if not cand:
            break
        weights = [m.popularity * (1.0 + 2.0 * sum(world.shared_neighbours(m, s) for s in seeds)) for m in cand]
        rec = _pick(rng, cand, weights)
        mentioned.add(id(rec))
        style = rng.random()
        if style < 0.4:
            d.say(False, "Have you seen {0}?", movies=[rec])
        elif style < 0.75:
            actor = rec.neighbours["starring"][0]
            name = actor[len(RES) + 1:-1].replace("_", " ")
            d.say(False, f"You should watch {{0}}, it stars {name}", movies=[rec], entities=[actor])
        else:
            director = rec.neighbours["director"][0]
            name = director[len(RES) + 1:-1].replace("_", " ")
            d.say(False, f"{{0}} by {name} is great", movies=[rec], entities=[director])
        r = rng.random()
        if off:
            liked = 0 if r < 0.6 else (2 if r < 0.8 else 1)
        else:
            liked = 1 if r < 0.88 else (2 if r < 0.99 else 0)
        if liked == 1:
            seen = int(rng.random() < 0.5)
            text = "Yes, I loved it!" if seen else "That sounds great, I will check it out"
            d.say(True, text, emotion=["like", "happy"] if rng.random() < 0.6 else ["happy", "grateful"])
        elif liked == 0:
            seen = 1
            bad_word = GENRES[rec.genre][1]
            d.say(True, f"I did not like that one, I am not into {bad_word} movies",
                  entities=[GENRES[rec.genre][0]], emotion=["negative"])
        else:
            seen = 0
            d.say(True, "I have not seen it. What is it about?", emotion=["curious"] if rng.random() < 0.8 else ["neutral"])
            if rng.random() < 0.5:
                d.say(True, "Maybe I will try it", emotion=None)
        d.ask(rec, suggested=1, seen=seen, liked=liked)
    d.say(False, "Enjoy your movie!")
    d.say(True, "Thanks for the suggestions, goodbye", entities=["Gratitude"] if rng.random() < 0.5 else [],
          emotion=["grateful", "happy"])
    return {
        "movieMentions": d.mentions,
        "respondentQuestions": {k: dict(v) for k, v in d.questions.items()},
        "messages": d.messages,
        "conversationId": str(20000 + conv_id),
        "respondentWorkerId": d.recommender,
        "initiatorWorkerId": d.seeker,
        "initiatorQuestions": d.questions,
    }


_REVIEW_SENTENCES = [
    "{actor} gives a wonderful performance here.",
    "The direction by {director} keeps everything tight.",
    "As a {genre} movie it really works.",
    "I saw it in 2010 with my brother and my whole family loved it.",
    "The script by {writer} has some great lines.",
    "I think my favourite scene is the ending.",
    "This review contains no spoilers.",
    "I give it 10 out of 10!",
    "The music is memorable and I still hum it.",
    "Some parts drag a little in the middle.",
    "{actor} and {actor2} have real chemistry.",
    "It is one of the best films of the decade?",
    "My friends and I quote it all the time.",
    "I cried at the ending, and I am not ashamed to admit it.",
    "It made me laugh so hard that my sides hurt.",
    "I was on the edge of my seat for the final hour.",
    "Honestly, I did not expect to care this much about these characters.",
    "The photography is gorgeous, every frame could hang on a wall.",
    "When {actor} appears on screen, the whole story lights up.",
    "I have watched it five times and it still surprises me.",
    "The pacing feels calm, almost like a warm evening walk.",
    "You will want to call your best friend right after watching it.",
    "My only complaint is that it ends too soon.",
    "It reminded me of the films I loved as a child.",
    "The dialogue sparkles with wit and warmth.",
    "{director} clearly knows how to build tension slowly.",
    "I felt nostalgic for days after seeing it.",
    "Bring tissues, because the last scene is heartbreaking.",
]


def make_reviews(world: ToyWorld, cfg: ToyConfig, rng: np.random.Generator) -> dict:
    """Reviews of distinct sentences (emotional, first-person, mentioning KG neighbours and the genre), some
    deliberately repetitive (for the repetition filter), with ratings and "review" sentences to scrub."""
    reviews: dict[str, list] = {}
    for m in world.movies:
        n = int(rng.integers(0, cfg.max_reviews_per_movie + 1) * (0.3 + m.popularity) // 1)
        revs = []
        for _ in range(n):
            actors = m.neighbours["starring"]
            fill = {
                "actor": actors[0], "actor2": actors[-1], "director": m.neighbours["director"][0],
                "writer": m.neighbours["writer"][0], "genre": _uri(GENRES[m.genre][0]),
            }
            k = int(rng.integers(3, 17))
            picks = rng.choice(len(_REVIEW_SENTENCES), size=k, replace=False)
            if rng.random() < 0.1:  # a spammy review that repeats itself
                picks = np.repeat(picks[:2], 4)
            sentences, ents = [], []
            for p in picks:
                s = _REVIEW_SENTENCES[p]
                for key, uri in fill.items():
                    if "{" + key + "}" in s:
                        name = GENRES[m.genre][1] if key == "genre" else uri[len(RES) + 1:-1].replace("_", " ")
                        s = s.replace("{" + key + "}", name)
                        ents.append(uri)
                sentences.append(s)
            ann = [[u, round(float(rng.uniform(0.3, 1.0)), 3)] for u in dict.fromkeys(ents)]
            if rng.random() < 0.3:
                ann.append([_uri(str(rng.choice(GENERIC))), round(float(rng.uniform(0.1, 0.3)), 3)])
            ann.sort(key=lambda a: -a[1])
            revs.append({
                "title": f"A {'great' if rng.random() < 0.7 else 'decent'} {GENRES[m.genre][1]} movie",
                "content": [" ".join(sentences)],
                "votes": int(rng.geometric(0.25)) - 1,
                "title_e": [], "title_e_0.4": [], "title_e_0.3": [], "title_e_0.1": [],
                "content_e": [a for a in ann if a[1] >= 0.5],
                "content_e_0.4": [a for a in ann if a[1] >= 0.4],
                "content_e_0.3": [a for a in ann if a[1] >= 0.3],
                "content_e_0.1": ann,
            })
        revs.sort(key=lambda r: -r["votes"])
        reviews.setdefault(m.name, []).extend(revs)
    return reviews


def generate(out_dir, cfg: ToyConfig) -> dict:
    """Write the toy raw folder; return a summary (counts per split)."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(cfg.seed)
    world = ToyWorld(cfg, rng)
    write_json(out_dir / "entity2id.json", world.entity2id, indent=None)
    write_json(out_dir / "relation2id.json", world.relation2id, indent=None)
    write_json(out_dir / "dbpedia_subkg.json", world.subkg(), indent=None)
    conv = 0
    summary = {"entities": len(world.entity2id), "movies": len(world.movies), "dialogs": {}}
    for split in SPLITS:
        with atomic_path(out_dir / cfg.dialog_pattern.format(split=split)) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                for _ in range(cfg.n_dialogs[split]):
                    f.write(json.dumps(make_dialog(world, cfg, rng, conv)) + "\n")
                    conv += 1
        summary["dialogs"][split] = cfg.n_dialogs[split]
    if cfg.reviews_file:
        write_json(out_dir / cfg.reviews_file, make_reviews(world, cfg, rng), indent=None)
    return summary
