"""Processed samples on the two real records, checked by hand against ECR_SPEC 2, 3.1 and 3.2."""

import copy

import pytest

from ecrflow.constants import RECOMMENDER, SEEKER
from ecrflow.data.process import dialog_records
from ecrflow.data.redial import Message, ReadStats, parse_dialog
from ecrflow.data.turns import EmotionRule, build_turns, merge_emotions, normalise_utterance, select_emotions

from conftest import entity2id_for

R = "<http://dbpedia.org/resource/{}>".format


def _records(record, e2i=None, rule=EmotionRule(), require_emotion=True):
    e2i = e2i or entity2id_for(record)
    stats = ReadStats()
    d = parse_dialog(record, "x", 1, require_emotion=require_emotion, stats=stats)
    pretrain, rec, seq = dialog_records(d, e2i, rule, stats)
    return e2i, pretrain, rec, seq, stats


def test_normalise_utterance():
    mentions = {"99896": "Spider-Man  (2002)"}
    assert normalise_utterance("or  @99896 &amp; @123", mentions) == "or Spider-Man (2002) & @123"
    assert normalise_utterance("or @99896 !", mentions, mask=True) == "or <movie> !"


def test_ecr_turns_roles_and_texts(ecr_record):
    e2i = entity2id_for(ecr_record)
    d = parse_dialog(ecr_record, "x", 1, require_emotion=True, stats=ReadStats())
    turns = build_turns(d, e2i, EmotionRule())
    assert [t.role for t in turns] == [RECOMMENDER, SEEKER] * 4
    assert turns[0].text == ("What kind of movies do you like have you seen Avengers: Infinity War (2018) ? "
                             "or Spider-Man (2002)")
    assert turns[0].masked_text == "What kind of movies do you like have you seen <movie> ? or <movie>"
    # Three seeker messages merge; only the first has labels above 0.1.
    assert turns[1].emotions == [("like", pytest.approx(0.7446124)), ("curious", pytest.approx(0.2178956))]
    assert turns[0].movie_ids == [e2i[R("Avengers:_Infinity_War")], e2i[R("Spider-Man_(2002_film)")]]


def test_ecr_recommendation_samples(ecr_record):
    e2i, pretrain, rec, _, _ = _records(ecr_record)
    assert [r["turn"] for r in rec] == [0, 2, 4, 6]
    first, second, fourth = rec[0], rec[1], rec[3]
    assert first["context"] == [] and first["rec_feedback"] == ["like", "like"]
    assert second["context_roles"] == [RECOMMENDER, SEEKER]
    assert second["resp"] == "<movie>" and second["resp_text"] == "X-Men: First Class (2011)"
    assert second["rec"] == [e2i[R("X-Men:_First_Class")]] and second["rec_redial_ids"] == ["154513"]
    # The recommender's movies carry the emotions of the seeker's reaction (turn 1).
    assert second["entity"] == [e2i[R("Avengers:_Infinity_War")], e2i[R("Spider-Man_(2002_film)")]]
    assert second["entity_emotions"] == [["like", "curious"], ["like", "curious"]]
    # Emotions of the next seeker turn (turn 3: curious 0.575, like 0.359).
    assert second["next_emotions"] == ["curious", "like"]
    assert second["next_emotion_probs"] == pytest.approx([0.5749606, 0.3586152])
    assert fourth["rec"] == [e2i[R("X-Men:_The_Last_Stand")]] and fourth["next_emotions"] == ["grateful", "happy"]
    # Turn 4 recommends no movie ("Film" is an entity); its entity joins the context with turn 5's emotions.
    assert rec[2]["rec"] == [] and fourth["entity"][-1] == e2i[R("Film")]
    assert fourth["entity_emotions"][-1] == ["curious", "like"]


def test_ecr_pretraining_samples(ecr_record):
    e2i, pretrain, _, seq, _ = _records(ecr_record)
    assert len(pretrain) == 8 and [p["role"] for p in pretrain][:2] == [RECOMMENDER, SEEKER]
    iron = pretrain[3]
    assert iron["role"] == SEEKER and iron["resp"] == "i also watched Iron Man (2008)"
    assert iron["rec"] == [e2i[R("Iron_Man_(2008_film)")]]
    assert len(iron["context"]) == 3 and iron["context_roles"] == [RECOMMENDER, SEEKER, RECOMMENDER]
    # The sequence lists every entity with its turn and emotions: a seeker's own, a recommender's next turn's.
    assert seq["entity_turn"] == [0, 0, 2, 3, 4, 6]
    assert seq["entity_emotions"][3] == ["curious", "like"]
    assert seq["entity_is_movie"] == [True, True, True, True, False, True]
    assert seq["entity_name"][1] == "Spider-Man (2002)"


def test_seeker_first_dialog_has_no_placeholder(unicrs_record):
    _, pretrain, rec, _, _ = _records(unicrs_record, require_emotion=False)
    # The seeker opens: its first turn has an empty context, and the next turn's context role is "seeker"
    # (the reference inserts '' and tags by parity, ECR_SPEC 8.25).
    assert pretrain[0]["role"] == SEEKER and pretrain[0]["context"] == []
    assert rec[0]["turn"] == 1 and rec[0]["context_roles"] == [SEEKER]
    assert rec[0]["context"] == ["Hi I am looking for a movie like Super Troopers (2001)"]


def test_unicrs_feedback_and_default_emotion(unicrs_record):
    e2i, _, rec, _, stats = _records(unicrs_record, require_emotion=False)
    by_turn = {r["turn"]: r for r in rec}
    assert by_turn[3]["rec_redial_ids"] == ["151656", "94688"] and by_turn[3]["rec_feedback"] == ["like", "like"]
    assert by_turn[7]["rec_feedback"] == ["not_said"]  # Lethal Weapon: liked 2
    assert by_turn[11]["rec_feedback"] == ["not_said"] and by_turn[11]["rec_suggested"] == [1]
    assert by_turn[1]["next_emotions"] == ["neutral"] and by_turn[1]["next_emotion_probs"] == [1.0]
    assert stats.counts["movie_names_unmatched"] == 0


def test_alias_names_match_their_own_ids(unicrs_record):
    d = parse_dialog(unicrs_record, "x", 1, require_emotion=False, stats=ReadStats())
    turns = build_turns(d, entity2id_for(unicrs_record), EmotionRule())
    # "American Pie" and "American Pie (1999)" are two ReDial ids of one movie; each name finds its own.
    assert turns[2].movie_redial_ids == ["192131", "134643"]
    assert turns[2].text.endswith("I have seen American Pie I mean American Pie (1999)")


def test_feedback_stays_aligned_when_a_movie_is_not_in_the_kg(unicrs_record):
    record = copy.deepcopy(unicrs_record)
    record["initiatorQuestions"]["94688"]["liked"] = 0
    e2i = entity2id_for(record)
    del e2i[R("Police_Academy_(film)")]
    _, _, rec, _, stats = _records(record, e2i=e2i, require_emotion=False)
    turn3 = next(r for r in rec if r["turn"] == 3)
    # Only Police Academy 2 is left, with its own feedback (disliked), not Police Academy's.
    assert turn3["rec"] == [e2i[R("Police_Academy_2:_Their_First_Assignment")]]
    assert turn3["rec_feedback"] == ["dislike"]
    assert stats.counts["unknown_movie_uris_dropped"] == 2


def _msg(emotion, sender=1):
    return Message(sender, "t", (), (), (), emotion)


def test_emotion_threshold_and_fallback():
    low = (("curious", 0.09), ("like", 0.08))
    on, off = EmotionRule(fallback_top1=True), EmotionRule(fallback_top1=False)
    assert select_emotions(_msg(low), on, is_seeker=True, mentions_entity=True) == [("curious", 0.09)]
    assert select_emotions(_msg(low), off, is_seeker=True, mentions_entity=True) == []
    assert select_emotions(_msg(low), on, is_seeker=True, mentions_entity=False) == []
    # The threshold is strict: p must exceed it.
    assert select_emotions(_msg((("like", 0.1),)), off, True, True) == []


def test_turn_merge_max_and_concat():
    per_message = [[("like", 0.5), ("happy", 0.2)], [("curious", 0.6), ("like", 0.3)]]
    assert merge_emotions(per_message, "max") == [("curious", 0.6), ("like", 0.5), ("happy", 0.2)]
    assert merge_emotions(per_message, "concat") == [("like", 0.5), ("happy", 0.2), ("curious", 0.6), ("like", 0.3)]


def test_speaker_tags_follow_roles(ecr_record, unicrs_record):
    from ecrflow.data.turns import serialise_context

    _, _, rec, _, _ = _records(ecr_record)
    assert serialise_context(rec[1]["context"], rec[1]["context_roles"], "<|endoftext|>") == (
        "System: What kind of movies do you like have you seen Avengers: Infinity War (2018) ? or Spider-Man (2002)"
        "<|endoftext|>User: Yes and i liked them Those are awesome I like that kind of movies<|endoftext|>")
    _, pretrain, _, _, _ = _records(unicrs_record, require_emotion=False)
    # Seeker first: turn 2's context is tagged User, System (parity from index would give System first).
    text = serialise_context(pretrain[2]["context"], pretrain[2]["context_roles"], "</s>")
    assert text.startswith("User: Hi I am looking for a movie like Super Troopers (2001)</s>System: You should watch")


def test_unknown_sender_makes_no_recommendation_sample(unicrs_record):
    """A third sender repeating the seeker's liked movie: the reference would make it a recommender turn
    whose target is Super Troopers, the seeker's own movie. Dropped, the samples are those of the clean dialog."""
    _, clean_pretrain, clean_rec, _, _ = _records(unicrs_record, require_emotion=False)
    record = copy.deepcopy(unicrs_record)
    record["messages"].insert(1, dict(record["messages"][0], senderWorkerId=999, text="I loved @111776 too"))
    e2i, pretrain, rec, _, stats = _records(record, require_emotion=False)
    assert stats.counts["messages_from_unknown_sender_dropped"] == 1
    assert rec == clean_rec and pretrain == clean_pretrain
    assert all(e2i[R("Super_Troopers")] not in r["rec"] for r in rec)


def test_null_movie_name_reads_as_empty(unicrs_record):
    record = copy.deepcopy(unicrs_record)
    record["movieMentions"]["111776"] = None
    _, pretrain, rec, seq, stats = _records(record, require_emotion=False)
    assert stats.counts["movie_mentions_null_name"] == 1
    assert pretrain[0]["resp"] == "Hi I am looking for a movie like"  # "@111776" -> "", as the reference
    # The message's own movie_name still names the movie; it matches no (empty) mention name.
    assert seq["entity_name"][0] == "Super Troopers (2001)"


def test_empty_seeker_text_in_the_label_free_path(unicrs_record):
    """emotion_label gives a seeker message without text the release's empty label set; process_split (which
    requires labels on a labelled file) reads it, and the sample before it weighs as neutral."""
    from ecrflow.emotion.classifier import seeker_texts

    record = copy.deepcopy(unicrs_record)
    record["messages"][5]["text"] = "  "  # the seeker's whole turn 4
    where, texts, empty = seeker_texts([record])
    assert empty == 1 and (0, 5) not in where and len(texts) == 7
    assert record["messages"][5]["emotion"] == []
    for d, m in where:  # the classifier's labels
        record["messages"][m]["emotion"] = {"like": 0.9, "curious": 0.05}
    d = parse_dialog(record, "x", 1, require_emotion=True, stats=ReadStats(), emotion_source="pipeline")
    rec = dialog_records(d, entity2id_for(record), EmotionRule(), ReadStats())[1]
    by_turn = {r["turn"]: r for r in rec}
    assert by_turn[3]["next_emotions"] == ["neutral"] and by_turn[3]["next_emotion_probs"] == [1.0]
    assert by_turn[5]["next_emotions"] == ["like"]
