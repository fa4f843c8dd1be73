"""Near-duplicate answers across inputs: the seed's similarity filter done properly, with MinHash and LSH.

Two answers are near duplicates when the Jaccard similarity of their character 3-gram sets (after the same
normalisation exact dedupe uses) is at least ``filters.near_dedupe``. Each accepted answer's MinHash signature
(64 permutations) goes into a `datasketch.MinHashLSH` index; a new answer whose LSH candidates include an
answer of *another* input is rejected as ``near_duplicate`` (the samples of one input may agree). LSH is
approximate: a pair just above the threshold can be missed, and one a little below it caught.

Streaming and resumable: the index is filled as answers are accepted, and at a start it is rebuilt from the
accepted records already in the shards (the records are the truth, as for exact dedupe). Time and memory per
million records are in docs/engine-benchmark.md.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from datasketch import MinHash, MinHashLSH
from distill.engine.filters import normalise
from distill.engine.ledger import row_hash

NUM_PERM = 64
SHINGLE = 3
# Drawing the permutations costs more than hashing an answer: draw them once, share them.
_TEMPLATE = MinHash(num_perm=NUM_PERM, seed=1)


_MIX = (np.uint64(0x9E3779B1), np.uint64(0x85EBCA77), np.uint64(0xC2B2AE3D))


def shingle_hashes(text: str) -> np.ndarray:
    """32-bit hashes of the normalised text's distinct character 3-grams, computed with numpy in one pass
    (hashing each shingle with SHA-1 in Python, datasketch's default, took ~90% of the time)."""
    codes = np.frombuffer(normalise(text).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < SHINGLE:
        codes = np.concatenate([codes, np.zeros(SHINGLE - len(codes), dtype=np.uint64)])
    mixed = codes[:-2] * _MIX[0] + codes[1:-1] * _MIX[1] + codes[2:] * _MIX[2]
    return np.unique(mixed & np.uint64(0xFFFFFFFF))


def signature(text: str) -> MinHash:
    """The MinHash of the normalised text's character 3-grams (the whole text when it is shorter)."""
    minhash = MinHash(
        num_perm=NUM_PERM, permutations=_TEMPLATE.permutations, scheme=_TEMPLATE.scheme, hashfunc=int
    )
    minhash.update_batch(shingle_hashes(text).tolist())
    return minhash


class NearDuplicates:
    """The LSH index of accepted answers, with the row each came from."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
        self._rows: list[int] = []  # index key (its position here) -> row hash

    def __len__(self) -> int:
        return len(self._rows)

    def check(self, text: str, row: int) -> bool:
        """True when ``text`` is a near duplicate of an accepted answer of another row; else it is added."""
        minhash = signature(text)
        if any(self._rows[key] != row for key in self._lsh.query(minhash)):
            return True
        self._lsh.insert(len(self._rows), minhash, check_duplication=False)
        self._rows.append(row)
        return False

    def fill(self, answers: Iterable[tuple[str, str]]) -> None:
        """Index (row id, answer) pairs already accepted (a resumed run's accepted records)."""
        for row_id, text in answers:
            self._lsh.insert(len(self._rows), signature(text), check_duplication=False)
            self._rows.append(row_hash(row_id))
