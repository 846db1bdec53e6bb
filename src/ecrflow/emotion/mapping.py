"""Free-form emotion words -> the nine ECR types (paper App. A.1, Table 8), shipped as data
(``emotion_map.tsv``: one ``word<TAB>type`` per line). Unmapped words are counted, never guessed."""

from __future__ import annotations

from collections import Counter
from importlib.resources import files
from pathlib import Path

from ..constants import EMOTIONS


def load_mapping(path=None) -> dict[str, str]:
    """The word -> type table; ``None`` reads the one shipped with ecrflow. Every type must be one of the
    nine labels."""
    text = (Path(path).read_text(encoding="utf-8") if path is not None
            else files("ecrflow.emotion").joinpath("emotion_map.tsv").read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip() not in EMOTIONS:
            raise ValueError(f"{path or 'emotion_map.tsv'}, line {n}: expected 'word<TAB>type' with a type among "
                             f"{', '.join(EMOTIONS)}, got {line!r}")
        table[normalise(parts[0])] = parts[1].strip()
    return table


def normalise(word: str) -> str:
    return word.strip().strip(".,;:!?\"'()[]").lower()


def map_words(words: list[str], table: dict[str, str]) -> tuple[list[str], list[str]]:
    """(types in first-seen order without repeats, the words that have no type)."""
    types, unmapped = [], []
    for w in words:
        t = table.get(normalise(w))
        if t is None:
            unmapped.append(normalise(w))
        elif t not in types:
            types.append(t)
    return types, unmapped


def label_shares(label_lists: list[list[str]]) -> dict[str, float]:
    """Share of annotated utterances carrying each type (the paper's Table 8 shares: like 46 %, ...)."""
    n = max(len(label_lists), 1)
    counts = Counter(t for labels in label_lists for t in set(labels))
    return {e: counts[e] / n for e in EMOTIONS}
