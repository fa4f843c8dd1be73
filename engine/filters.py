"""The seed's quality filters: refusals, too short, echoes of the instruction, exact duplicates.

The seed's "cosine" is a character-set overlap, which calls any two Chinese texts of the same domain
similar; here it is the cosine of character-bigram count vectors. Duplicates are caught on a normalised
output hash whose set survives resume (the ledger keeps the hash of every accepted answer).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from operator import add

from engine.config import FilterConfig

TRUNCATED = "truncated"
FORMAT = "format"
REFUSAL = "refusal"
TOO_SHORT = "too_short"
ECHO = "similar_to_instruction"
DUPLICATE = "duplicate"
REASONS = (TRUNCATED, FORMAT, REFUSAL, TOO_SHORT, ECHO, DUPLICATE)

_SPACES = re.compile(r"\s+")


def _grams(text: str) -> Counter[str]:
    # Bigrams built by C-level map/Counter: this runs once per response on the hot path.
    return Counter(map(add, text, text[1:])) if len(text) > 1 else Counter(text)


def bigram_cosine(a: str, b: str) -> float:
    """Cosine similarity of the character-bigram count vectors of a and b (0 for an empty text)."""
    grams_a, grams_b = _grams(a), _grams(b)
    if not grams_a or not grams_b:
        return 0.0
    if len(grams_a) > len(grams_b):
        grams_a, grams_b = grams_b, grams_a
    get = grams_b.get
    dot = sum(count * get(gram, 0) for gram, count in grams_a.items())
    if not dot:
        return 0.0
    norm_a = math.sqrt(sum(count * count for count in grams_a.values()))
    norm_b = math.sqrt(sum(count * count for count in grams_b.values()))
    return dot / (norm_a * norm_b)


def normalise(text: str) -> str:
    """Width, case and whitespace folded: what makes two answers "the same" for dedupe."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def output_hash(text: str) -> int:
    """A 64-bit hash of the normalised answer, stable across processes (stored in the ledger)."""
    digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class QualityFilter:
    """Decides accept/reject for one parsed answer; remembers accepted answers for dedupe."""

    def __init__(self, config: FilterConfig, seen_hashes: set[int] | None = None) -> None:
        self.config = config
        self.seen_hashes: set[int] = seen_hashes if seen_hashes is not None else set()
        self._refusals = tuple(_fold_quotes(phrase).casefold() for phrase in config.refusal_phrases if phrase)

    def is_refusal(self, text: str) -> bool:
        folded = _fold_quotes(text).casefold()
        return any(phrase in folded for phrase in self._refusals)

    def judge(self, instruction: str, answer: str) -> tuple[str | None, int | None]:
        """(reject reason or None, output hash). An accepted answer's hash is remembered."""
        config = self.config
        if self.is_refusal(answer):
            return REFUSAL, None
        if len(answer) < config.min_output_chars:
            return TOO_SHORT, None
        if bigram_cosine(instruction, answer) > config.max_instruction_similarity:
            return ECHO, None
        digest = output_hash(answer)
        if config.dedupe:
            if digest in self.seen_hashes:
                return DUPLICATE, digest
            self.seen_hashes.add(digest)
        return None, digest


def _fold_quotes(text: str) -> str:
    # Teachers write "I’m sorry" with a typographic apostrophe as often as with a straight one.
    return text.replace("\u2019", "'")
