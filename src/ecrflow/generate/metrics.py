"""Objective metrics for generated responses (ECR_SPEC 6.2).

The reference's definitions (UniCRS ``evaluate_conv.ConvEvaluator``, reused by ECR) are:

- ``bleu{n}``: NLTK ``sentence_bleu`` with one reference, weights one-hot at n and no smoothing, i.e. brevity
  penalty x clipped n-gram precision of order n alone (not cumulative BLEU). Computed here by hand.
- ``dist{n}``: distinct n-grams pooled over all predictions / number of non-empty predictions (not a ratio).
- ``item_ratio``: occurrences of ``<movie>`` in the predictions / number of non-empty predictions.
- Sums run over all predictions, the denominator counts only the non-empty ones; when every prediction is
  empty the reference reports 0.

``corpus_bleu`` (sacrebleu, 0-100 scale), ``dist_ratio{n}`` (distinct / total) and ``mean_len`` are extras,
not the reference's numbers. The paper reports no BLEU or Dist for ECR; these are logged only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import sacrebleu

SPECIAL_TOKENS = ("<pad>", "<|endoftext|>")


def tokenize(text: str) -> list[str]:
    """Remove ``<pad>`` and ``<|endoftext|>`` (anywhere, as substrings) and split on whitespace."""
    for tok in SPECIAL_TOKENS:
        text = text.replace(tok, "")
    return text.split()


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def _check_order(n: int) -> None:
    if n < 1:
        raise ValueError(f"n-gram order must be >= 1, got {n}")


def sentence_bleu_n(hyp: Sequence[str], ref: Sequence[str], n: int) -> float:
    """NLTK ``sentence_bleu([ref], hyp, weights=one-hot at n)`` without smoothing.

    = BP x (clipped n-gram matches / hypothesis n-grams). Edge cases follow NLTK 3.x:

    - no unigram match (including an empty hypothesis or reference) -> 0;
    - no n-gram match of order n (including a hypothesis shorter than n) -> 0. NLTK returns
      ``BP * sys.float_info.min`` (~2e-308) there; we return exactly 0;
    - zero matches at orders other than n do not matter (their weight is 0);
    - BP = 1 if len(hyp) > len(ref), 0 if the hypothesis is empty, else exp(1 - len(ref) / len(hyp)).
    """
    _check_order(n)
    # NLTK's "no unigram match -> 0" needs no separate check: any n-gram match implies a unigram match.
    hyp_counts = Counter(_ngrams(hyp, n))
    ref_counts = Counter(_ngrams(ref, n))
    matches = sum(min(c, ref_counts[g]) for g, c in hyp_counts.items())
    if matches == 0:
        return 0.0
    precision = matches / sum(hyp_counts.values())
    if len(hyp) > len(ref):
        bp = 1.0
    else:  # len(hyp) > 0 here since there was a match (NLTK's BP = 0 for an empty hypothesis is moot)
        bp = math.exp(1 - len(ref) / len(hyp))
    return bp * precision


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """sacrebleu's corpus BLEU with its default settings (13a tokenisation, exp smoothing), one reference per
    hypothesis, on sacrebleu's 0-100 scale (not 0-1). Not part of the reference's evaluation."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("corpus_bleu needs at least one hypothesis")
    return float(sacrebleu.corpus_bleu(list(hyps), [list(refs)]).score)


def _n_nonempty(token_lists: Sequence[Sequence[str]]) -> int:
    return sum(1 for t in token_lists if len(t) > 0)


def distinct_reference(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """The reference's Dist@n: distinct n-grams pooled over all predictions / number of non-empty
    predictions (0 when all are empty). Can exceed 1; not a ratio."""
    _check_order(n)
    denom = _n_nonempty(token_lists)
    if denom == 0:
        return 0.0
    distinct = {g for t in token_lists for g in _ngrams(t, n)}
    return len(distinct) / denom


def distinct_ratio(token_lists: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams / total n-grams pooled over all predictions (0 when there are none)."""
    _check_order(n)
    grams = [g for t in token_lists for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def item_ratio(token_lists_or_texts: Sequence[Sequence[str] | str], placeholder: str = "<movie>") -> float:
    """Occurrences of ``placeholder`` in the predictions / number of non-empty predictions (0 when all are
    empty). Strings are passed through :func:`tokenize` first. Occurrences are counted as substrings (the
    reference uses ``re.findall`` on the decoded text, so ``<movie>,`` counts too)."""
    token_lists = [tokenize(x) if isinstance(x, str) else list(x) for x in token_lists_or_texts]
    denom = _n_nonempty(token_lists)
    if denom == 0:
        return 0.0
    # The placeholder holds no whitespace, so counting per token equals counting in the joined text.
    return sum(tok.count(placeholder) for t in token_lists for tok in t) / denom


def objective_metrics(preds: Sequence[str], refs: Sequence[str], ns: Sequence[int] = (1, 2, 3, 4)) -> dict:
    """All objective metrics of predictions against their references (raw decoded strings).

    Keys: ``n`` (predictions), ``n_empty`` (empty after :func:`tokenize`), ``mean_len`` (tokens per prediction,
    over all of them), ``bleu{n}`` (reference: the per-sentence :func:`sentence_bleu_n` summed over ALL
    predictions, divided by the number of NON-EMPTY ones, as in ConvEvaluator's sums / ``sent_cnt``; empty
    predictions add 0 to the sum), ``corpus_bleu`` (sacrebleu, 0-100, on the cleaned texts), ``dist{n}``
    (reference), ``dist_ratio{n}`` and ``item_ratio`` (reference). Reference-style means are 0 when every
    prediction is empty.
    """
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise ValueError("objective_metrics needs at least one prediction; got none")
    hyp_toks = [tokenize(p) for p in preds]
    ref_toks = [tokenize(r) for r in refs]
    n_nonempty = _n_nonempty(hyp_toks)
    out: dict = {
        "n": len(preds),
        "n_empty": len(preds) - n_nonempty,
        "mean_len": sum(len(t) for t in hyp_toks) / len(preds),
    }
    for n in ns:
        total = sum(sentence_bleu_n(h, r, n) for h, r in zip(hyp_toks, ref_toks))
        out[f"bleu{n}"] = total / n_nonempty if n_nonempty else 0.0
    out["corpus_bleu"] = corpus_bleu([" ".join(t) for t in hyp_toks], [" ".join(t) for t in ref_toks])
    for n in ns:
        out[f"dist{n}"] = distinct_reference(hyp_toks, n)
    for n in ns:
        out[f"dist_ratio{n}"] = distinct_ratio(hyp_toks, n)
    out["item_ratio"] = item_ratio(hyp_toks)
    return out
