"""Review knowledge (ECR_SPEC 3.6) and review filters (ECR_SPEC 3.8) on hand-made cases."""

from __future__ import annotations

import copy

import pyarrow as pa
import pytest

from ecrflow.errors import InputError
from ecrflow.generate.knowledge import (
    MOVIE_KNOWLEDGE_SCHEMA, REVIEW_SCHEMA, annotate_reviews, entity_name, one_hop, relation_name,
)
from ecrflow.generate.reviews import (
    DIALOGPT_PROFILE, LLAMA_PROFILE, ReviewProfile, cap_length, filter_reviews, first_person_count, join_pieces,
    repetition_rate, scrub_sentences, split_pieces, word_count,
)

R = "<http://dbpedia.org/resource/"
O = "<http://dbpedia.org/ontology/"


def uri(name: str) -> str:
    return f"{R}{name}>"


# ---------------------------------------------------------------- knowledge: names


@pytest.mark.parametrize("u, stripped, full", [
    (uri("Black_Panther_(film)"), "Black Panther", "Black Panther (film)"),
    ("http://dbpedia.org/resource/AC/DC", "AC/DC", "AC/DC"),  # '/' inside the name, no <>
    (uri("Jane_Doe"), "Jane Doe", "Jane Doe"),
    (uri("Alien_(franchise)_(film)"), "Alien (franchise)", "Alien (franchise) (film)"),  # only the trailing (...)
    ("<http://example.org/things/Foo_Bar>", "Foo Bar", "Foo Bar"),
    ("Plain_Name", "Plain Name", "Plain Name"),
])
def test_entity_name(u, stripped, full):
    assert entity_name(u) == stripped
    assert entity_name(u, strip_paren=False) == full


def test_relation_name():
    assert relation_name(f"{O}starring>") == "starring"
    assert relation_name("http://dbpedia.org/ontology/musicComposer") == "musicComposer"
    assert relation_name("self_loop") == "self_loop"


# ---------------------------------------------------------------- knowledge: a 3-movie mini KG

ENTITY2ID = {
    uri("Alpha_Movie_(film)"): 0, uri("Beta_(film)"): 1, uri("John_Actor"): 2, uri("Jane_Director"): 3,
    uri("Paris"): 4, uri("Romance_novel"): 5, uri("Love"): 6, uri("Hollywood_Studios"): 7, uri("Mumbai_City"): 8,
    uri("Drama_film"): 9, uri("Beta"): 10, uri("Beta_Ray_Bill"): 11, uri("Gamma_Ray_(film)"): 12,
}
RELATION2ID = {f"{O}director>": 0, f"{O}genre>": 1, f"{O}starring>": 2, f"{O}writer>": 3, "self_loop": 4}
SUBKG = {
    "0": [[4, 0], [2, 2], [0, 3], [3, 3], [1, 9], [2, 2]],  # starring twice, genre not a review relation
    "1": [[4, 1]],
    "12": [[4, 12], [1, 9]],
    "2": [[4, 2]],
}
MOVIE_IDS = {"The Alpha Movie (1999)": 0, "Beta (2005)": 1, "Gamma Ray (2010)": 12}


def review(content, ann, votes=3, title="t"):
    return {"title": title, "content": content, "votes": votes, "content_e_0.1": ann, "content_e": []}


def mini_reviews() -> dict:
    return {
        "The Alpha Movie (1999)": [
            review(["A0 text"], [[uri("John_Actor"), 0.9], [uri("Paris"), 0.5], [uri("Romance_novel"), 0.8],
                                 [uri("Love"), 0.7], [uri("Alpha_Movie_(film)"), 0.95], [uri("Drama_film"), 0.2]]),
            review("A1 text", [[uri("Jane_Director"), 0.9], [uri("Unknown_Thing"), 0.8], [uri("Paris"), 0.6],
                               [uri("Romance_novel"), 0.6], [uri("Jane_Director"), 0.1]]),
            review(["A2 text", "ignored"], [[uri("Romance_novel"), 0.5], [uri("Paris"), 0.4],
                                             [uri("Hollywood_Studios"), 0.3]]),
            review(["A3 text"], [[uri("Love"), 0.9], [uri("Alpha_Movie_(film)"), 0.8]], votes="1,234"),
        ],
        "Delta (2011)": [review("x", []), review("y", [])],  # not a known movie
        "Beta (2005)": [
            review("B0 text", [[uri("Hollywood_Studios"), 0.5], [uri("Beta_Ray_Bill"), 0.9],
                               [uri("Beta_(film)"), 0.99], [uri("Beta"), 0.8]]),
            review("B1 text", [[uri("John_Actor"), 0.7], [uri("Romance_novel"), 0.6]]),
        ],
        "Gamma Ray (2010)": [
            review("C0 text", [[uri("Mumbai_City"), 0.9], [uri("Hollywood_Studios"), 0.8]]),
            review("C1 text", [[uri("Mumbai_City"), 0.9]]),
        ],
    }


def annotate(reviews=None, **kw):
    params = dict(entity2id=ENTITY2ID, movie_ids=MOVIE_IDS, neighbours=one_hop(SUBKG, RELATION2ID),
                  stop_words={"love"}, min_global_count=3, max_movies_per_entity=2, min_name_length=6,
                  min_movie_count=2)
    params.update(kw)
    return annotate_reviews(mini_reviews() if reviews is None else reviews, **params)


def test_one_hop_filters_relations_and_dedups():
    hop = one_hop(SUBKG, RELATION2ID)
    # genre and self_loop are dropped; writer comes before director (ONE_HOP_RELATIONS order); no duplicate
    assert hop == {0: [(2, "starring"), (3, "writer"), (3, "director")]}
    assert one_hop(SUBKG, RELATION2ID, relations=("genre",)) == {0: [(9, "genre")], 12: [(9, "genre")]}


def test_annotate_reviews_per_review_entities_and_relations():
    rows, _, _ = annotate()
    by_id = {r["review_id"]: r for r in rows}
    assert list(by_id) == ["0-0", "0-1", "0-2", "0-3", "1-0", "1-1", "12-0", "12-1"]
    a0 = by_id["0-0"]
    # John_Actor is a neighbour -> relations, never entities; the stop word and the movie itself (by id: its
    # name "Alpha Movie" differs from the title "The Alpha Movie") are excluded;
    # candidates were [Romance_novel, Paris, Drama_film] and only Romance_novel is in movie 0's list
    assert a0["relation_entities"] == [2] and a0["relations"] == ["starring"]
    assert a0["entities"] == [5]
    assert a0["content"] == "A0 text" and a0["movie"] == 0 and a0["movie_name"] == "The Alpha Movie (1999)"
    a1 = by_id["0-1"]
    assert a1["relation_entities"] == [3, 3] and a1["relations"] == ["writer", "director"]  # once each
    assert a1["entities"] == [5] and a1["content"] == "A1 text"
    assert by_id["0-2"]["content"] == "A2 text"
    # only the stop word and the movie itself: no candidate left (else the first one would be kept)
    assert by_id["0-3"]["entities"] == [] and by_id["0-3"]["votes"] == 1234
    # Beta_(film) (same id) and "Beta" (same name as the title) are the movie; Beta_Ray_Bill is not.
    # Neither candidate is in movie 1's list [5], so the first candidate by score (not file order) is kept.
    assert by_id["1-0"]["entities"] == [11]
    # John_Actor is not a neighbour of movie 1, so there it is a plain candidate (filtered out by the list)
    assert by_id["1-1"]["entities"] == [5] and by_id["1-1"]["relations"] == []
    assert by_id["12-0"]["entities"] == [8] and by_id["12-1"]["entities"] == [8]
    assert set(rows[0]) == set(REVIEW_SCHEMA.names)
    pa.Table.from_pylist(rows, schema=REVIEW_SCHEMA)  # the rows fit the schema


def test_annotate_reviews_movie_lists_whitelist_and_fallbacks():
    _, movies, report = annotate()
    lists = {m["movie"]: m["entities"] for m in movies}
    # totals: Romance_novel 4 (2 movies), Paris 3 (name too short), Hollywood_Studios 3 (3 movies > 2),
    # Mumbai_City 2 < 3 -> the walk stops there
    assert report["whitelist"] == [5] and report["whitelist_size"] == 1
    assert lists == {0: [5], 1: [5], 12: [8]}  # main rule, fallback 1 (count 1 < 2), fallback 2 (no whitelist)
    assert report["movies_fallback_whitelist_first"] == 1
    assert report["movies_fallback_most_frequent"] == 1
    m0 = movies[0]
    assert m0["neighbour_entities"] == [2, 3, 3] and m0["neighbour_relations"] == ["starring", "writer", "director"]
    assert [m["n_reviews"] for m in movies] == [4, 2, 2]
    assert set(m0) == set(MOVIE_KNOWLEDGE_SCHEMA.names)
    pa.Table.from_pylist(movies, schema=MOVIE_KNOWLEDGE_SCHEMA)

    # A lower threshold admits Mumbai_City: movie 12 then uses the main rule, no fallback 2
    _, movies, report = annotate(min_global_count=2)
    assert report["whitelist"] == [5, 8]
    assert {m["movie"]: m["entities"] for m in movies}[12] == [8]
    assert report["movies_fallback_most_frequent"] == 0
    # With min_movie_count=4, movie 0 (Romance_novel in 3 reviews) also falls back to its first whitelisted entity
    _, movies, report = annotate(min_movie_count=4)
    assert {m["movie"]: m["entities"] for m in movies}[0] == [5] and report["movies_fallback_whitelist_first"] == 2


def test_annotate_reviews_counts_unknowns_instead_of_raising():
    rows, _, report = annotate()
    assert report["movies_in_file"] == 4 and report["movies_mapped"] == 3 and report["movies_unmapped"] == 1
    assert report["unmapped_examples"] == ["Delta (2011)"]
    assert report["reviews_in"] == 10 and report["reviews_unmapped"] == 2 and report["reviews_out"] == len(rows) == 8
    assert report["uris_unknown"] == 1 and report["unknown_uri_examples"] == [uri("Unknown_Thing")]
    assert report["reviews_without_entities"] == 1


def test_annotate_reviews_pools_names_of_one_movie():
    reviews = {"Beta (2005)": mini_reviews()["Beta (2005)"], "Beta  (2005)": [review("B2", [])]}
    rows, movies, report = annotate(reviews, movie_ids={"Beta (2005)": 1, "Beta  (2005)": 1})
    assert [r["review_id"] for r in rows] == ["1-0", "1-1", "1-2"]
    assert len(movies) == 1 and movies[0]["n_reviews"] == 3 and movies[0]["movie_name"] == "Beta (2005)"
    assert report["movies_sharing_an_id"] == 1


@pytest.mark.parametrize("bad, where", [
    ({"The Alpha Movie (1999)": [{"title": "t", "votes": 1}]}, "review 0"),
    ({"The Alpha Movie (1999)": [review(["ok"], []), review([], [])]}, "review 1"),
    ({"The Alpha Movie (1999)": [review(["ok"], [["only a uri"]])]}, "review 0"),
    ({"The Alpha Movie (1999)": "not a list"}, "The Alpha Movie (1999)"),
])
def test_annotate_reviews_malformed(bad, where):
    with pytest.raises(InputError, match="The Alpha Movie") as err:
        annotate(bad)
    assert where in str(err.value)
    with pytest.raises(InputError):
        annotate([1, 2])


def test_annotate_reviews_does_not_depend_on_input_order():
    rows, movies, _ = annotate()
    shuffled = {k: list(reversed(v)) for k, v in reversed(list(mini_reviews().items()))}
    rows2, movies2, _ = annotate(shuffled)
    assert movies2 == movies
    assert sorted(r["content"] for r in rows2) == sorted(r["content"] for r in rows)


# ---------------------------------------------------------------- review filters


def test_repetition_rate():
    assert repetition_rate("The cat saw the dog") == pytest.approx(2 / 5)  # case-insensitive "the"
    assert repetition_rate("a b a b a, c!") == pytest.approx(5 / 6)
    assert repetition_rate("all different words") == 0
    assert repetition_rate("...") == 0


def test_split_and_join_pieces():
    assert split_pieces("A. B?") == ["A", ".", " B", "?", ""]
    assert split_pieces("Wow...") == ["Wow", ".", "", ".", "", ".", ""]
    assert split_pieces("no delimiter") == ["no delimiter"]
    text = "One! Two? Three. tail"
    assert join_pieces(split_pieces(text)) == text


def test_scrub_years_survive_by_default_but_not_in_reference_mode():
    text = "I saw it in 2010 with my family. It lasts 100 minutes. It was great."
    assert scrub_sentences(text) == text
    assert scrub_sentences(text, reference_10=True) == "It was great."


@pytest.mark.parametrize("text, expected", [
    ("I give it 10/10! Great cast.", "Great cast."),
    ("This review is spoiler free. Fun movie.", "Fun movie."),
    ("Fun. REVIEWERS hated it? Whatever.", "Fun. Whatever."),  # case-insensitive substring
    ("Worth 7 out of 10. Yes.", "Yes."),
    ("Good. 9 / 10! Bad.", "Good. Bad."),  # the "!" goes with its sentence (reference left "Good.! Bad.")
    ("Seen 10 times. Loved it.", "Seen 10 times. Loved it."),
])
def test_scrub_drops_review_and_rating_sentences(text, expected):
    assert scrub_sentences(text) == expected


def test_cap_length_keeps_head_and_tail():
    text = ("One two three. Four five. Six seven eight nine. Ten eleven twelve. Thirteen fourteen."
            " tail words here")
    assert word_count(text) == 17
    # budget 5 + 5: prefix 3+2 words, suffix 3+2 words; the middle sentence and the trailing piece go
    assert cap_length(text, 10) == "One two three. Four five. Ten eleven twelve. Thirteen fourteen."
    assert cap_length(text, 17) == text
    # the first and the last sentence are kept even when each exceeds half the budget
    assert cap_length("a b c d. e f. g h i j.", 4) == "a b c d. g h i j."
    # the suffix never repeats a prefix sentence
    assert cap_length("a b. c d. e f g h i j k", 6) == "a b. c d."
    assert cap_length("a. b. c. d e f g h i j k l m", 6) == "a. b. c."
    # without any delimiter: the first max_words words
    assert cap_length(" ".join(f"w{i}" for i in range(20)), 10) == " ".join(f"w{i}" for i in range(10))


def test_first_person_count():
    text = "My friend told me, I loved it. Mine too! I'm sure."
    assert first_person_count(text) == 5  # My, me, I, Mine, I('m)
    # the reference's exact whitespace tokens would only have counted "I"
    assert sum(text.split().count(w) for w in ("I", "me", "my", "mine")) == 1


def test_profiles():
    assert (DIALOGPT_PROFILE.min_votes, DIALOGPT_PROFILE.min_words, DIALOGPT_PROFILE.max_words,
            DIALOGPT_PROFILE.min_first_person) == (1, 20, 150, 0)
    assert (LLAMA_PROFILE.min_votes, LLAMA_PROFILE.min_words, LLAMA_PROFILE.max_words,
            LLAMA_PROFILE.min_first_person) == (5, 120, 300, 4)
    assert LLAMA_PROFILE.max_repetition == 0.5


def _rows() -> list[dict]:
    rows = [
        {"content": "the the the the cat", "votes": 9},  # repetition 4/5
        {"content": "I like this film a lot indeed.", "votes": 0},  # votes
        {"content": "This review is long and detailed. Ok.", "votes": 3},  # scrubbed to "Ok." -> too short
        {"content": "Nice acting and a strong plot overall.", "votes": 3},  # no first person
        {"content": "I liked the acting very much. The plot was thin though. The music was lovely in parts."
                    " My kids loved the ending.", "votes": 3},  # kept, capped
    ]
    rows += [{"content": f"I think movie {k} is a fine piece of work.", "votes": 1} for k in range(8)]
    for i, r in enumerate(rows):
        r.update(review_id=f"{i % 4}-{i}", movie=i % 4, title=f"t{i}")
    return rows


PROFILE = ReviewProfile(min_votes=1, min_words=5, max_words=12, min_first_person=1)


def test_filter_reviews_counts_and_content():
    rows = _rows()
    before = copy.deepcopy(rows)
    train, valid, report = filter_reviews(rows, PROFILE, valid_fraction=0.3, seed=42)
    assert rows == before  # inputs untouched
    assert list(report["dropped"]) == ["repetition", "votes", "too_short", "first_person"]
    assert report["dropped"] == {"repetition": 1, "votes": 1, "too_short": 1, "first_person": 1}
    assert report["scrubbed_sentences"] == 1 and report["capped"] == 1
    assert report["reviews_in"] == 13 and report["kept"] == {"reviews": 9, "movies": 4}
    assert report["valid"]["reviews"] == 3 and report["train"]["reviews"] == 6  # round(0.3 * 9)
    assert report["profile"]["max_words"] == 12
    kept = {r["review_id"]: r for r in train + valid}
    assert kept["0-4"]["content"] == "I liked the acting very much. My kids loved the ending."
    assert kept["0-4"]["title"] == "t4" and kept["0-4"]["votes"] == 3
    # each split keeps input order
    order = [r["review_id"] for r in rows]
    assert [r["review_id"] for r in train] == sorted((r["review_id"] for r in train), key=order.index)


def test_filter_reviews_split_is_seeded():
    rows = _rows()

    def valid_ids(seed, fraction=0.3):
        return [r["review_id"] for r in filter_reviews(rows, PROFILE, valid_fraction=fraction, seed=seed)[1]]

    assert valid_ids(42) == valid_ids(42)
    assert any(valid_ids(s) != valid_ids(42) for s in range(1, 6))
    assert len(valid_ids(42, fraction=0.01)) == 1  # at least one valid review when there are two or more
    assert valid_ids(42, fraction=0.0) == []
    with pytest.raises(ValueError):
        filter_reviews(rows, PROFILE, valid_fraction=1.0)


def test_filter_reviews_reference_10_and_llama_profile():
    rows = [{"review_id": "0-0", "movie": 0, "votes": 1,
             "content": "I saw it in 2010 with my family and we all enjoyed it. The cast is superb and charming."}]
    train, _, _ = filter_reviews(rows, PROFILE)
    assert train[0]["content"].startswith("I saw it in 2010")
    train, _, report = filter_reviews(rows, PROFILE, reference_10=True)
    assert train == [] and report["dropped"]["first_person"] == 1  # what remains has no first person word
    # the Llama profile needs 5 votes
    assert filter_reviews(rows, LLAMA_PROFILE)[2]["dropped"]["votes"] == 1
    with pytest.raises(InputError, match="0-0"):
        filter_reviews([{"review_id": "0-0", "votes": 1}], PROFILE)
