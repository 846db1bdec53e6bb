"""Fixed vocabularies shared by every stage."""

SPLITS = ("train", "valid", "test")

# The nine emotion labels in the order of the reference code (index 0-8); index 9 pads.
EMOTIONS = (
    "like",
    "curious",
    "happy",
    "grateful",
    "negative",
    "neutral",
    "nostalgia",
    "agreement",
    "surprise",
)
EMOTION_INDEX = {name: i for i, name in enumerate(EMOTIONS)}
EMOTION_PAD = len(EMOTIONS)

SEEKER = "seeker"
RECOMMENDER = "recommender"

# Per-item feedback from ReDial's initiatorQuestions[id]["liked"]: 0 disliked, 1 liked, 2 did not say.
# Stored as words so that nobody has to remember which of the reference's two integer codes is meant
# (process_mask uses like=+1/dislike=-1/not-said=0, the evaluator like=1/dislike=0/not-said=-1).
LIKE = "like"
DISLIKE = "dislike"
NOT_SAID = "not_said"
FEEDBACK_FROM_LIKED = {0: DISLIKE, 1: LIKE, 2: NOT_SAID}

MOVIE_TOKEN = "<movie>"
SELF_LOOP = "self_loop"
