"""The seed's quality filters: refusals, too short, echoes of the instruction, exact duplicates.

The seed's "cosine" is a character-set overlap, which calls any two Chinese texts of the same domain
similar; here it is the cosine of character-bigram vectors. Duplicates are caught on a normalised
output hash across inputs (never between the samples of one input), and survive resume: the ledger keeps the
hash of every accepted answer and of its row.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from distill.engine.config import FilterConfig

if TYPE_CHECKING:  # only for the annotation: the index module imports this one
    from distill.engine.near_dedupe import NearDuplicates

TRUNCATED = "truncated"
FORMAT = "format"
REFUSAL = "refusal"
TOO_SHORT = "too_short"
ECHO = "similar_to_instruction"
DUPLICATE = "duplicate"
SCHEMA = "schema"
NEAR_DUPLICATE = "near_duplicate"
DISAGREEMENT = "disagreement"
LOW_AGREEMENT = "low_agreement"
REASONS = (
    TRUNCATED,
    FORMAT,
    REFUSAL,
    SCHEMA,
    TOO_SHORT,
    ECHO,
    DUPLICATE,
    NEAR_DUPLICATE,
    DISAGREEMENT,
    LOW_AGREEMENT,
)
_FENCE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?```$", re.S)

# A refusal phrase that starts within this many characters of the answer makes it a refusal ("好的,很抱歉…",
# "Unfortunately, I cannot…"); anywhere in an answer this short, too.
REFUSAL_OPENING_CHARS = 24
REFUSAL_SHORT_CHARS = 40


def _grams(text: str) -> set[int]:
    """The text's character bigrams as 64-bit ints: in UTF-32 every 8-byte word is two characters, so the
    words of the encoding and of the encoding shifted by one character are all the bigrams. Twice as fast as
    slicing 2-character strings, and this runs on every response."""
    data = memoryview(text.encode("utf-32-le"))  # slices of a memoryview are views, not copies
    size = len(data)
    grams = set(data[: size // 8 * 8].cast("Q"))
    grams.update(data[4 : 4 + (size - 4) // 8 * 8].cast("Q"))
    return grams


def bigram_cosine(a: str, b: str) -> float:
    """Cosine similarity of the texts' character-bigram sets (binary vectors): |A∩B| / sqrt(|A|·|B|).

    Binary rather than count vectors: as discriminating for "is this answer an echo of the prompt", and
    several times cheaper, since every step is a C-level set operation.
    """
    grams_a, grams_b = _grams(a), _grams(b)
    if not grams_a or not grams_b:
        return 0.0
    return len(grams_a & grams_b) / math.sqrt(len(grams_a) * len(grams_b))


def normalise(text: str) -> str:
    """Width, case and whitespace folded: what makes two answers "the same" for dedupe.

    (str.split and the regex ``\\s`` agree on what whitespace is, so this equals the earlier
    ``re.sub(r"\\s+", " ", …).strip()`` and the hashes in existing ledgers stay valid; it is 3× faster.)"""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def output_hash(text: str) -> int:
    """A 64-bit hash of the normalised answer, stable across processes (stored in the ledger)."""
    digest = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class QualityFilter:
    """Decides accept/reject for one parsed answer; remembers accepted answers for dedupe."""

    def __init__(
        self,
        config: FilterConfig,
        seen_answers: dict[int, int] | None = None,
        answer_schema: dict[str, Any] | None = None,
        near: NearDuplicates | None = None,
    ) -> None:
        self.config = config
        self.near = near  # the MinHash/LSH index of accepted answers, when filters.near_dedupe is set
        # A structured answer's schema, compiled once (jsonschema picks the draft the schema declares).
        self._schema = _compile_schema(answer_schema) if answer_schema else None
        # answer hash -> hash of the row whose answer it was (0: unknown, from an old ledger)
        self.seen_answers: dict[int, int] = seen_answers if seen_answers is not None else {}
        # One alternation over case-folded text: a single C-level scan per answer (IGNORECASE is 7x slower).
        phrases = [re.escape(_fold(phrase)) for phrase in config.refusal_phrases if phrase]
        self._refusal = re.compile("|".join(phrases)) if phrases else None
        alternation = "|".join(phrases)
        self._opening = (
            re.compile(f"(?s).{{0,{REFUSAL_OPENING_CHARS}}}?(?:{alternation})") if phrases else None
        )
        # Only this much of a long answer can hold its opening phrase: fold that, not the whole answer.
        self._head = (
            REFUSAL_OPENING_CHARS + max((len(phrase) for phrase in config.refusal_phrases), default=0) + 8
        )

    def is_refusal(self, text: str) -> bool:
        """A refusal *is* a refusal: it opens with a refusal phrase, or it is short and holds one.

        A phrase deep inside a long answer ("…合同约定乙方无法回答的问题由甲方解释…") is content, not a refusal.
        Measured on a labelled set in the tests (tests/engine/data/refusals.jsonl).
        """
        if self._refusal is None:
            return False
        text = text.strip()
        if self._opening.match(_fold(text[: self._head])) is not None:
            return True
        return len(text) <= REFUSAL_SHORT_CHARS and self._refusal.search(_fold(text)) is not None

    def fits_schema(self, answer: str) -> bool:
        """The answer is JSON (bare, or in one ``` fence) and valid against the answer schema."""
        fenced = _FENCE.match(answer)
        try:
            value = orjson.loads(fenced.group(1) if fenced else answer)
        except orjson.JSONDecodeError:
            return False
        return self._schema.is_valid(value)

    def judge(self, instruction: str, answer: str, row: int = 0) -> tuple[str | None, int | None]:
        """(reject reason or None, output hash): `screen`, then `deduplicate`."""
        reason = self.screen(instruction, answer)
        if reason is not None:
            return reason, None
        return self.deduplicate(answer, row)

    def screen(self, instruction: str, answer: str) -> str | None:
        """The filters that look at one answer alone: refusal, schema, too short, echo of the instruction."""
        config = self.config
        if self.is_refusal(answer):
            return REFUSAL
        if self._schema is not None and not self.fits_schema(answer):
            return SCHEMA
        if len(answer) < config.min_output_chars:
            return TOO_SHORT
        if bigram_cosine(instruction, answer) > config.max_instruction_similarity:
            return ECHO
        return None

    def deduplicate(self, answer: str, row: int) -> tuple[str | None, int]:
        """(DUPLICATE or None, the answer's hash); an accepted answer's hash is remembered with its row.

        A duplicate is the same answer already accepted for *another* input: the samples of one input may
        agree (for a task with one right answer they should), and agreement is not duplication.
        """
        digest = output_hash(answer)
        if self.config.dedupe:
            first_row = self.seen_answers.get(digest)
            if first_row is not None and (first_row != row or not row):
                return DUPLICATE, digest
        if self.near is not None and self.near.check(answer, row):
            return NEAR_DUPLICATE, digest
        if self.config.dedupe:
            self.seen_answers.setdefault(digest, row)
        return None, digest


def agreement_key(answer: str) -> str:
    """What two answers of one input must share to agree: the normalised text, or for a JSON object (bare or
    in one ``` fence) its fields, each value normalised, in key order — so key order, spacing, width and case
    do not count as disagreement."""
    fenced = _FENCE.match(answer.strip())
    try:
        value = orjson.loads(fenced.group(1) if fenced else answer)
    except orjson.JSONDecodeError:
        return normalise(answer)
    if isinstance(value, dict):
        fields = {str(key): normalise(orjson.dumps(item).decode()) for key, item in value.items()}
        return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS).decode()
    return normalise(orjson.dumps(value).decode())


def vote(keys: list[str]) -> tuple[str | None, float]:
    """The majority key among an input's answers and the share that agrees with it (first seen wins a tie)."""
    if not keys:
        return None, 0.0
    counts = Counter(keys)
    best = max(counts, key=lambda key: (counts[key], -keys.index(key)))
    return best, counts[best] / len(keys)


def _compile_schema(schema: dict[str, Any]) -> Any:
    # jsonschema costs ~60 ms of start-up to import: only runs with an answer schema pay for it.
    import jsonschema

    return jsonschema.validators.validator_for(schema)(schema)


def _fold(text: str) -> str:
    # Case-insensitive, and teachers write "I’m sorry" with a typographic apostrophe as often as without.
    return text.casefold().replace("\u2019", "'")
