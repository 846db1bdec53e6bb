"""Generation metrics (ECR_SPEC 6.2) on hand-computed cases and against NLTK / sacrebleu."""

import math
import random
import warnings

import pytest
import sacrebleu
from nltk.translate.bleu_score import sentence_bleu

from ecrflow.generate.metrics import (
    corpus_bleu,
    distinct_ratio,
    distinct_reference,
    item_ratio,
    objective_metrics,
    sentence_bleu_n,
    tokenize,
)


def test_tokenize_removes_special_tokens():
    assert tokenize("<|endoftext|>hi  there<pad><pad>\n") == ["hi", "there"]
    assert tokenize("a<pad>b <|endoftext|>") == ["ab"]  # substrings removed, as str.replace in the reference
    assert tokenize("<pad> <|endoftext|> ") == []


def test_sentence_bleu_clipping_by_hand():
    hyp, ref = "the the the the".split(), "the cat".split()
    # 1-grams: "the" x4 in hyp, x1 in ref -> clipped 1/4; len(hyp)=4 > len(ref)=2 -> BP = 1.
    assert sentence_bleu_n(hyp, ref, 1) == pytest.approx(0.25)
    # 2-grams: "the the" x3 vs ref's only bigram "the cat" -> 0 matches -> 0.
    assert sentence_bleu_n(hyp, ref, 2) == 0.0
    # A 4-gram hypothesis has no 5-grams -> 0 even though there is a unigram match.
    assert sentence_bleu_n(hyp, ref, 5) == 0.0


def test_sentence_bleu_brevity_penalty_by_hand():
    hyp, ref = "the cat".split(), "the cat sat on the mat".split()
    # p1 = 2/2, p2 = 1/1; len(hyp)=2 <= len(ref)=6 -> BP = exp(1 - 6/2) = exp(-2).
    assert sentence_bleu_n(hyp, ref, 1) == pytest.approx(math.exp(-2))
    assert sentence_bleu_n(hyp, ref, 2) == pytest.approx(math.exp(-2))
    # Equal lengths: BP = exp(0) = 1. "a b c" vs "a b d": p1 = 2/3, p2 = 1/2, p3 = 0.
    assert sentence_bleu_n(list("abc"), list("abd"), 1) == pytest.approx(2 / 3)
    assert sentence_bleu_n(list("abc"), list("abd"), 2) == pytest.approx(1 / 2)
    assert sentence_bleu_n(list("abc"), list("abd"), 3) == 0.0
    # One token, matched, ref of 2: p1 = 1, BP = exp(1 - 2) ; no bigrams -> BLEU@2 = 0.
    assert sentence_bleu_n(["a"], ["a", "b"], 1) == pytest.approx(math.exp(-1))
    assert sentence_bleu_n(["a"], ["a", "b"], 2) == 0.0
    assert sentence_bleu_n([], ["a"], 1) == 0.0
    assert sentence_bleu_n(["a"], [], 1) == 0.0


def _nltk_one_hot(hyp, ref, n):
    weights = [0] * 4
    weights[n - 1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns on every zero-count order
        return float(sentence_bleu([ref], hyp, weights))


def test_sentence_bleu_matches_nltk_on_random_pairs():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "d", "e"]
    pairs = [([], ["a"]), ([], []), (["a"], []), (["a"], ["a"]), (["b"], ["a", "b", "c"]), (["c"], ["a"])]
    for i in range(200):
        ref = [rng.choice(vocab) for _ in range(rng.randint(1, 8))]
        if i % 2:  # independent hypothesis, often very short
            hyp = [rng.choice(vocab) for _ in range(rng.choice([0, 1, 1, 2, 3, 4, 5, 6, 8]))]
        else:  # a slice of the reference with one substitution/insertion, so 3- and 4-grams match too
            lo = rng.randint(0, len(ref))
            hyp = ref[lo:lo + rng.randint(0, 9)]
            if hyp and rng.random() < 0.7:
                j = rng.randrange(len(hyp))
                hyp[j:j + rng.randint(0, 1)] = [rng.choice(vocab)]
        pairs.append((hyp, ref))
    nonzero = {n: 0 for n in range(1, 5)}
    for hyp, ref in pairs:
        for n in range(1, 5):
            ours, theirs = sentence_bleu_n(hyp, ref, n), _nltk_one_hot(hyp, ref, n)
            # NLTK gives BP * float_info.min (~1e-308) where we give 0.
            assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-300), (hyp, ref, n)
            nonzero[n] += ours > 0
    assert all(v >= 10 for v in nonzero.values()), nonzero  # the comparison is not all zeros


def test_corpus_bleu_by_hand_and_sacrebleu():
    # Same length (BP = 1); precisions 5/6, 3/5, 2/4, 1/3 -> 100 * (1/12)^(1/4).
    hyp, ref = ["the cat sat on the mat"], ["the cat sat on a mat"]
    assert corpus_bleu(hyp, ref) == pytest.approx(100 * (1 / 12) ** 0.25)
    hyps = ["the cat sat on the mat", "a dog", "hello there friend"]
    refs = ["the cat sat on a mat", "the dog barked", "hello friend"]
    assert corpus_bleu(hyps, refs) == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert corpus_bleu(["x y z w", "p q r s t"], ["x y z w", "p q r s t"]) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        corpus_bleu(["a"], [])
    with pytest.raises(ValueError):
        corpus_bleu([], [])


def test_distinct_reference_vs_ratio_by_hand():
    toks = [s.split() for s in ["a b a c", "a b", ""]]  # 2 non-empty predictions
    # 1-grams a b a c a b: 3 distinct of 6.
    assert distinct_reference(toks, 1) == pytest.approx(3 / 2)
    assert distinct_ratio(toks, 1) == pytest.approx(3 / 6)
    # 2-grams ab ba ac ab: 3 distinct of 4.
    assert distinct_reference(toks, 2) == pytest.approx(3 / 2)
    assert distinct_ratio(toks, 2) == pytest.approx(3 / 4)
    # 3-grams aba bac: 2 distinct of 2.
    assert distinct_reference(toks, 3) == pytest.approx(2 / 2)
    assert distinct_ratio(toks, 3) == pytest.approx(1.0)
    # No 5-grams at all.
    assert distinct_reference(toks, 5) == 0.0
    assert distinct_ratio(toks, 5) == 0.0
    # The brief's case: ["a b a", "a b", ""] -> 1-grams {a, b} of 5; 2-grams {ab, ba} of 3.
    toks = [s.split() for s in ["a b a", "a b", ""]]
    assert distinct_reference(toks, 1) == pytest.approx(2 / 2)
    assert distinct_ratio(toks, 1) == pytest.approx(2 / 5)
    assert distinct_reference(toks, 2) == pytest.approx(2 / 2)
    assert distinct_ratio(toks, 2) == pytest.approx(2 / 3)
    assert distinct_reference([[], []], 1) == 0.0


def test_item_ratio():
    texts = ["watch <movie> or <movie>", "<movie>, it is great", "", "no item<pad>"]
    # 3 placeholders ("<movie>," counts as in the reference's regex) / 3 non-empty predictions.
    assert item_ratio(texts) == pytest.approx(3 / 3)
    assert item_ratio([t.split() for t in texts]) == pytest.approx(3 / 3)
    assert item_ratio(["<pad>", "<|endoftext|>"]) == 0.0
    assert item_ratio(["x [M] [M]", "y"], placeholder="[M]") == pytest.approx(2 / 2)


def test_objective_metrics_denominators():
    preds = ["the the the the", "<pad><|endoftext|>", "the cat <movie>", "  "]
    refs = ["the cat", "anything", "the cat <movie>", "the"]
    m = objective_metrics(preds, refs)
    assert m["n"] == 4 and m["n_empty"] == 2
    assert m["mean_len"] == pytest.approx((4 + 0 + 3 + 0) / 4)
    # BLEU@1: 0.25 (clipping case) + 0 + 1 (exact) + 0, summed over all, over 2 non-empty predictions.
    assert m["bleu1"] == pytest.approx((0.25 + 1.0) / 2)
    # BLEU@2: 0 + 1 ; BLEU@3: 0 + 1 ; BLEU@4: no 4-grams in either -> 0.
    assert m["bleu2"] == pytest.approx(1 / 2)
    assert m["bleu3"] == pytest.approx(1 / 2)
    assert m["bleu4"] == 0.0
    # Distinct 1-grams {the, cat, <movie>} = 3, over 2; 7 unigrams in all.
    assert m["dist1"] == pytest.approx(3 / 2)
    assert m["dist_ratio1"] == pytest.approx(3 / 7)
    # 2-grams: "the the" x3, "the cat", "cat <movie>" -> 3 distinct of 5.
    assert m["dist2"] == pytest.approx(3 / 2)
    assert m["dist_ratio2"] == pytest.approx(3 / 5)
    assert m["item_ratio"] == pytest.approx(1 / 2)
    cleaned = ["the the the the", "", "the cat <movie>", ""]
    assert m["corpus_bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(cleaned, [["the cat", "anything", "the cat <movie>", "the"]]).score)
    assert set(m) == {"n", "n_empty", "mean_len", "corpus_bleu", "item_ratio",
                      *(f"{k}{n}" for k in ("bleu", "dist", "dist_ratio") for n in range(1, 5))}


def test_objective_metrics_all_empty_and_errors():
    m = objective_metrics(["", "<pad>"], ["a b", "c"])
    assert m["n_empty"] == 2 and m["bleu1"] == 0.0 and m["dist1"] == 0.0 and m["item_ratio"] == 0.0
    with pytest.raises(ValueError, match="at least one prediction"):
        objective_metrics([], [])
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        objective_metrics(["a", "b"], ["a"])
    m = objective_metrics(["a b"], ["a b"], ns=(1, 2))
    assert "bleu3" not in m and m["bleu2"] == pytest.approx(1.0)
