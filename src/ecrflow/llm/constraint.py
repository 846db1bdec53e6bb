"""Structured output that every backend understands: a constraint is a sequence of segments, each a finite
set of allowed strings, optionally repeated with a separator.

That one small language covers what the project asks LLMs for (an emotion word or two from a vocabulary;
judge lines ``"<name>: <digit>"``) and translates to every enforcement mechanism there is: a regex and a
choice list for servers with guided decoding (vLLM), and a character automaton that the Hugging Face
backend runs over token strings (:class:`TokenConstraint`). Enforcement only steers generation; answers are
always checked by the strict :meth:`Constraint.parse`, which never guesses.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

CHOICES_LIMIT = 5000
_REGEX_SPECIAL = set("\\.^$*+?{}[]|()")


class ParseError(ValueError):
    """A text that does not match its constraint (exactly, as a whole)."""

    def __init__(self, text: str, reason: str):
        self.text = text
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"{reason}: {shown!r}")


@dataclass(frozen=True)
class Segment:
    """``options`` repeated between ``min_repeat`` and ``max_repeat`` times, repetitions joined by ``sep``.
    ``capture`` says whether :meth:`Constraint.parse` returns the chosen options (False for literals)."""

    options: tuple[str, ...]
    min_repeat: int = 1
    max_repeat: int = 1
    sep: str = ""
    capture: bool = True

    def __post_init__(self):
        opts = tuple(dict.fromkeys(str(o) for o in self.options))  # dedupe, keep order
        if not opts:
            raise ValueError("a segment needs at least one option")
        if any(o == "" for o in opts):
            raise ValueError("segment options must be non-empty strings (use min_repeat=0 for an optional part)")
        if not 0 <= self.min_repeat <= self.max_repeat or self.max_repeat < 1:
            raise ValueError(f"need 0 <= min_repeat <= max_repeat and max_repeat >= 1, got "
                             f"{self.min_repeat}..{self.max_repeat}")
        object.__setattr__(self, "options", opts)

    def count(self) -> int:
        n = len(self.options)
        return sum(n ** k for k in range(self.min_repeat, self.max_repeat + 1))


@dataclass(frozen=True)
class Constraint:
    segments: tuple[Segment, ...]

    def __post_init__(self):
        segs = tuple(self.segments)
        if not segs:
            raise ValueError("a constraint needs at least one segment")
        object.__setattr__(self, "segments", segs)

    # -- builders -----------------------------------------------------------------------------------------

    @classmethod
    def choice(cls, options: Iterable[str]) -> Constraint:
        """Exactly one of ``options``."""
        return cls((Segment(tuple(options)),))

    @classmethod
    def words(cls, vocabulary: Iterable[str], *, max_words: int = 1, sep: str = ", ",
              min_words: int = 1) -> Constraint:
        """``min_words`` to ``max_words`` words of ``vocabulary`` joined by ``sep``; parse gives the words."""
        return cls((Segment(tuple(vocabulary), min_words, max_words, sep),))

    @classmethod
    def lines(cls, names: Iterable[str], values: Iterable[str], *, sep: str = ": ", per_line: int = 1,
              value_sep: str = " ") -> Constraint:
        """One line ``"<name><sep><value>\\n"`` per name, in order (``per_line`` values joined by
        ``value_sep`` on each line, e.g. the judge's five scores); parse gives the values, line by line.

        The newline after the last line is optional, so that an answer survives the whitespace strip every
        backend applies ("a: 1\\nb: 2" and "a: 1\\nb: 2\\n" both match)."""
        names, values = list(names), tuple(values)
        if not names:
            raise ValueError("lines() needs at least one name")
        if per_line < 1:
            raise ValueError(f"per_line must be >= 1, got {per_line}")
        segs: list[Segment] = []
        for i, name in enumerate(names):
            segs.append(Segment((f"{name}{sep}",), capture=False))
            segs.append(Segment(values, per_line, per_line, value_sep))
            segs.append(Segment(("\n",), min_repeat=0 if i == len(names) - 1 else 1, capture=False))
        return cls(tuple(segs))

    def to_json(self) -> dict:
        return {"segments": [{"options": list(s.options), "min": s.min_repeat, "max": s.max_repeat,
                              "sep": s.sep, "capture": s.capture} for s in self.segments]}

    # -- server-side forms ----------------------------------------------------------------------------------

    def to_regex(self) -> str:
        """A regex for the whole answer (no anchors): alternations of escaped literals, longest first. Only
        ``\\`` escapes of metacharacters and ``\\n``/``\\t``/``\\xHH`` are used, which every engine reads."""
        return "".join(_segment_regex(s) for s in self.segments)

    def count(self) -> int:
        n = 1
        for s in self.segments:
            n *= s.count()
        return n

    def choices(self, limit: int = CHOICES_LIMIT) -> list[str] | None:
        """Every allowed string, when there are at most ``limit`` of them (else None)."""
        if self.count() > limit:
            return None
        per_segment = []
        for s in self.segments:
            alts = [s.sep.join(combo) for k in range(s.min_repeat, s.max_repeat + 1)
                    for combo in itertools.product(s.options, repeat=k)]
            per_segment.append(alts)
        return list(dict.fromkeys("".join(parts) for parts in itertools.product(*per_segment)))

    # -- strict checking ------------------------------------------------------------------------------------

    def matches(self, text: str) -> bool:
        state = self.advance(self.start(), text)
        return state is not None and self.accepting(state)

    def parse(self, text: str) -> list[str]:
        """The captured options in order (e.g. the words, or one value per line); :class:`ParseError` when
        ``text`` does not match exactly or matches in more than one way."""
        if not isinstance(text, str):
            raise ParseError(str(text), "not a string")
        memo: dict[tuple[int, int, int], list[tuple[str, ...]]] = {}

        def walk(i: int, r: int, pos: int) -> list[tuple[str, ...]]:
            # All parses (at most 2: enough to tell ambiguity) of text[pos:] from segment i, repetition r.
            key = (i, r, pos)
            if key in memo:
                return memo[key]
            found: list[tuple[str, ...]] = []
            if i == len(self.segments):
                found = [()] if pos == len(text) else []
            else:
                seg = self.segments[i]
                if r < seg.max_repeat:
                    prefix = seg.sep if r else ""
                    for opt in seg.options:
                        piece = prefix + opt
                        if text.startswith(piece, pos):
                            head = (opt,) if seg.capture else ()
                            found += [head + rest for rest in walk(i, r + 1, pos + len(piece))]
                            if len(found) > 1:
                                break
                if r >= seg.min_repeat and len(found) < 2:
                    found += walk(i + 1, 0, pos)
            memo[key] = found[:2]
            return memo[key]

        parses = walk(0, 0, 0)
        if not parses:
            raise ParseError(text, "answer does not match the expected format")
        if len(parses) > 1:
            raise ParseError(text, "answer matches the expected format in more than one way")
        return list(parses[0])

    # -- character automaton --------------------------------------------------------------------------------
    # A state is a frozenset of threads (segment, repetitions done, trie node); node -1 with segment ==
    # len(segments) is the end. Each segment has a trie of its first repetition's strings and one of the
    # later repetitions' (sep + option); the state holds every way the text read so far can continue.

    @cached_property
    def _tries(self):
        children: list[dict[str, int]] = []
        terminal: list[bool] = []

        def build(strings) -> int:
            root = len(children)
            children.append({})
            terminal.append(False)
            for s in strings:
                node = root
                for ch in s:
                    nxt = children[node].get(ch)
                    if nxt is None:
                        nxt = len(children)
                        children.append({})
                        terminal.append(False)
                        children[node][ch] = nxt
                    node = nxt
                terminal[node] = True
            return root

        roots = []
        for s in self.segments:
            first = build(s.options)
            later = build([s.sep + o for o in s.options]) if s.sep and s.max_repeat > 1 else first
            roots.append((first, later))
        return children, terminal, roots

    def _closure(self, i: int, r: int) -> set[tuple[int, int, int]]:
        """Threads at the start of repetition r of segment i, skipping segments whose minimum is met."""
        _, _, roots = self._tries
        out = set()
        while i < len(self.segments):
            seg = self.segments[i]
            if r < seg.max_repeat:
                out.add((i, r, roots[i][1 if r else 0]))
            if r < seg.min_repeat:
                return out
            i, r = i + 1, 0
        out.add((len(self.segments), 0, -1))
        return out

    def start(self) -> frozenset:
        return frozenset(self._closure(0, 0))

    def advance(self, state: frozenset | None, text: str) -> frozenset | None:
        """The state after reading ``text``, or None when no allowed string continues that way."""
        if state is None:
            return None
        children, terminal, _ = self._tries
        cur = state
        for ch in text:
            nxt = set()
            for i, r, node in cur:
                if node < 0:
                    continue
                child = children[node].get(ch)
                if child is None:
                    continue
                if children[child]:
                    nxt.add((i, r, child))
                if terminal[child]:
                    nxt |= self._closure(i, r + 1)
            if not nxt:
                return None
            cur = frozenset(nxt)
        return cur

    def accepting(self, state: frozenset | None) -> bool:
        return state is not None and (len(self.segments), 0, -1) in state

    def next_chars(self, state: frozenset | None) -> set[str]:
        """Characters that can come next (empty for a dead state or a state that can only end)."""
        if state is None:
            return set()
        children, _, _ = self._tries
        return {ch for _, _, node in state if node >= 0 for ch in children[node]}


def _escape(s: str) -> str:
    out = []
    for ch in s:
        if ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _quantifier(lo: int, hi: int) -> str:
    if lo == hi:
        return "" if lo == 1 else f"{{{lo}}}"
    if (lo, hi) == (0, 1):
        return "?"
    return f"{{{lo},{hi}}}"


def _segment_regex(seg: Segment) -> str:
    opts = sorted(seg.options, key=lambda o: (-len(o), o))
    alt = _escape(opts[0]) if len(opts) == 1 else "(?:" + "|".join(_escape(o) for o in opts) + ")"
    if seg.max_repeat == 1:
        body = alt
    else:
        more = f"(?:{_escape(seg.sep)}{alt})" + _quantifier(max(seg.min_repeat - 1, 0), seg.max_repeat - 1)
        body = alt + more
    if seg.min_repeat == 0:
        body = f"(?:{body})?"
    return body


# -- token-level enforcement for Hugging Face generation ------------------------------------------------------


class TokenTable:
    """Each vocabulary token's text, computed once per tokenizer, indexed by its first character (one-
    character tokens) and by its first two characters (longer ones): a state's candidates are then the
    tokens that start with a two-character path the automaton allows, not every token with a leading space.

    A token's text is read as ``decode([anchor, token]) - decode([anchor])``: for byte-level BPE that is the
    plain ``convert_tokens_to_string([token])``, and for SentencePiece-style tokenizers it keeps the leading
    space that decoding a lone token would drop. Special tokens, empty strings and byte fragments of a
    multi-byte character (decoded as U+FFFD) are never allowed.
    """

    def __init__(self, tokenizer):
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        added = getattr(tokenizer, "added_tokens_decoder", None) or {}
        special |= {tid for tid, tok in added.items() if getattr(tok, "special", False)}
        anchor = _anchor_token(tokenizer, special)
        base = tokenizer.convert_tokens_to_string([anchor]) if anchor is not None else ""
        self.strings: list[str | None] = []
        self.single: dict[str, list[int]] = {}
        self.by_prefix2: dict[str, list[int]] = {}
        for tid, tok in enumerate(tokens):
            s = None
            if tok is not None and tid not in special:
                if anchor is not None:
                    both = tokenizer.convert_tokens_to_string([anchor, tok])
                    s = both[len(base):] if both.startswith(base) else tokenizer.convert_tokens_to_string([tok])
                else:
                    s = tokenizer.convert_tokens_to_string([tok])
                if not s or "\ufffd" in s:
                    s = None
            self.strings.append(s)
            if s is not None:
                if len(s) == 1:
                    self.single.setdefault(s, []).append(tid)
                else:
                    self.by_prefix2.setdefault(s[:2], []).append(tid)


def _anchor_token(tokenizer, special) -> str | None:
    """A plain one-letter token to decode others after (see :class:`TokenTable`)."""
    vocab = tokenizer.get_vocab()
    for letter in "aeiostnx":
        tid = vocab.get(letter)
        if tid is not None and tid not in special and tokenizer.convert_tokens_to_string([letter]) == letter:
            return letter
    return None


class _TokenMasker:
    """The logic of :class:`TokenConstraint`, free of transformers so it can be tested and timed alone."""

    def __init__(self, constraint: Constraint, tokenizer_or_table, prompt_len: int,
                 eos_token_ids: Iterable[int] | None = None):
        table = tokenizer_or_table if isinstance(tokenizer_or_table, TokenTable) else TokenTable(tokenizer_or_table)
        self.constraint = constraint
        self.table = table
        self.prompt_len = int(prompt_len)
        if eos_token_ids is None:
            eos = getattr(tokenizer_or_table, "eos_token_id", None)
            eos_token_ids = [] if eos is None else [eos]
        self.eos = sorted({int(e) for e in eos_token_ids})
        if not self.eos:
            raise ValueError("TokenConstraint needs the EOS token id(s) to end an answer")
        self._states: dict[tuple[int, ...], frozenset | None] = {(): constraint.start()}
        self._allowed: dict[frozenset | None, object] = {}

    def state_of(self, generated: tuple[int, ...]) -> frozenset | None:
        """The automaton state after the generated tokens (memoised by prefix, so each step costs one
        token's advance per row)."""
        known = len(generated)
        while generated[:known] not in self._states:
            known -= 1
        state = self._states[generated[:known]]
        strings = self.table.strings
        for n in range(known, len(generated)):
            tid = generated[n]
            s = strings[tid] if tid < len(strings) else None
            state = None if s is None else self.constraint.advance(state, s)
            self._states[generated[:n + 1]] = state
        return state

    def allowed(self, state: frozenset | None):
        """Token ids allowed in ``state`` (a LongTensor): every token whose whole text can be read from
        it, plus EOS when the state accepts; only EOS when nothing else is possible (the answer then fails
        the strict parse instead of running on)."""
        ids = self._allowed.get(state)
        if ids is not None:
            return ids
        import torch

        c, table = self.constraint, self.table
        out = []
        for ch in c.next_chars(state):
            out += table.single.get(ch, ())
            after = c.advance(state, ch)
            for ch2 in c.next_chars(after):
                after2 = c.advance(after, ch2)
                for tid in table.by_prefix2.get(ch + ch2, ()):
                    if c.advance(after2, table.strings[tid][2:]) is not None:
                        out.append(tid)
        if not out or c.accepting(state):
            out += self.eos
        ids = torch.tensor(sorted(set(out)), dtype=torch.long)
        self._allowed[state] = ids
        return ids

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        vocab = scores.shape[-1]
        eos = set(self.eos)
        for row in range(input_ids.shape[0]):
            generated = tuple(input_ids[row, self.prompt_len:].tolist())
            if eos.intersection(generated):
                mask[row] = 0  # finished: generate pads this row anyway
                continue
            ids = self.allowed(self.state_of(generated))
            mask[row, ids[ids < vocab]] = 0
        return scores + mask


_token_constraint_cls = None


def __getattr__(name):
    # TokenConstraint subclasses transformers.LogitsProcessor; build it on first use so that importing this
    # module does not import transformers.
    global _token_constraint_cls
    if name == "TokenConstraint":
        if _token_constraint_cls is None:
            from transformers import LogitsProcessor

            class TokenConstraint(_TokenMasker, LogitsProcessor):
                """A logits processor that keeps every row of a batch inside ``constraint``: each step, the
                row's state is recomputed from its tokens after ``prompt_len`` (prompts are left-padded to
                one length) and every token that would leave the constraint gets -inf."""

            TokenConstraint.__module__ = __name__
            TokenConstraint.__qualname__ = "TokenConstraint"
            _token_constraint_cls = TokenConstraint
        return _token_constraint_cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
