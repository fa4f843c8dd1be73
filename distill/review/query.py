"""The list view's questions to the index: filters, full-text search, sort and one page of rows.

Every filter is a validated parameter turned into SQL with placeholders; sorts come from a fixed table. A
search of three or more characters uses the trigram index for the rows it covers and a scan for rows added
since; a shorter one (a two-character Chinese word is common) scans the text. Both are plain substring
matches, case-insensitive for ASCII letters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from distill.review.decisions import APPROVE, JUDGE, LOW_SCORE, PERSON, REJECT
from distill.review.index import RunIndex

STATUSES = ("accepted", "rejected", "failed")
DECISION_FILTERS = ("unreviewed", "approved", "rejected", "edited", "judge_rejected")
SORTS = {
    "position": "rec.rowid",
    "length": "rec.answer_len IS NULL, rec.answer_len, rec.rowid",
    "-length": "rec.answer_len IS NULL, rec.answer_len DESC, rec.rowid",
    "agreement": "rec.agreement IS NULL, rec.agreement, rec.rowid",
    "score": "rec.score IS NULL, rec.score, rec.rowid",
    "-score": "rec.score IS NULL, rec.score DESC, rec.rowid",
    "decided": "rec.decided_seq IS NULL, rec.decided_seq DESC, rec.rowid",
}
MAX_PAGE = 200
MIN_INDEXED_QUERY = 3  # the trigram index answers substrings of at least three characters


class QueryError(ValueError):
    """A bad list parameter: the message names it."""


@dataclass
class ListQuery:
    status: str | None = None
    reason: str | None = None
    decision: str | None = None
    min_len: int | None = None
    max_len: int | None = None
    min_agreement: float | None = None
    max_agreement: float | None = None
    min_score: float | None = None
    max_score: float | None = None
    q: str = ""
    sort: str = "position"
    offset: int = 0
    limit: int = 50

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ListQuery:
        query = cls()
        for name in ("status", "reason", "decision", "q", "sort"):
            value = params.get(name, "")
            if value:
                setattr(query, name, value)
        for name in ("min_len", "max_len", "offset", "limit"):
            if params.get(name, "") != "":
                try:
                    setattr(query, name, int(params[name]))
                except ValueError:
                    raise QueryError(f"{name}: not a whole number: {params[name]!r}") from None
        for name in ("min_agreement", "max_agreement", "min_score", "max_score"):
            if params.get(name, "") != "":
                try:
                    setattr(query, name, float(params[name]))
                except ValueError:
                    raise QueryError(f"{name}: not a number: {params[name]!r}") from None
        if query.status is not None and query.status not in STATUSES:
            raise QueryError(f"status: one of {', '.join(STATUSES)}, got {query.status!r}")
        if query.decision is not None and query.decision not in DECISION_FILTERS:
            raise QueryError(f"decision: one of {', '.join(DECISION_FILTERS)}, got {query.decision!r}")
        if query.sort not in SORTS:
            raise QueryError(f"sort: one of {', '.join(SORTS)}, got {query.sort!r}")
        if query.offset < 0 or not 1 <= query.limit <= MAX_PAGE:
            raise QueryError(f"offset must be >= 0 and limit 1–{MAX_PAGE}")
        if len(query.q) > 500:
            raise QueryError("q: a search is at most 500 characters")
        return query


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where_clause(query: ListQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.status:
        clauses.append("rec.status = ?")
        params.append(query.status)
    if query.reason == LOW_SCORE:  # the judge's rejection lives in the decisions, not in the shards
        clauses.append(f"rec.decision = '{REJECT}' AND rec.decided_by = '{JUDGE}'")
    elif query.reason:
        clauses.append("rec.reason = ?")
        params.append(query.reason)
    if query.decision == "unreviewed":
        clauses.append("rec.status = 'accepted' AND rec.decision IS NULL")
    elif query.decision == "approved":
        clauses.append(f"rec.decision = '{APPROVE}'")
    elif query.decision == "rejected":
        clauses.append(f"rec.decision = '{REJECT}' AND rec.decided_by = '{PERSON}'")
    elif query.decision == "judge_rejected":
        clauses.append(f"rec.decision = '{REJECT}' AND rec.decided_by = '{JUDGE}'")
    elif query.decision == "edited":
        clauses.append("rec.edited = 1")
    for column, low, high in (
        ("answer_len", query.min_len, query.max_len),
        ("agreement", query.min_agreement, query.max_agreement),
        ("score", query.min_score, query.max_score),
    ):
        if low is not None:
            clauses.append(f"rec.{column} >= ?")
            params.append(low)
        if high is not None:
            clauses.append(f"rec.{column} <= ?")
            params.append(high)
    if query.q.strip():
        clauses.append("rec.rowid IN (SELECT rowid FROM temp.hits)")  # filled by `Search.prepare`
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_LIST_COLUMNS = (
    "rec.rowid, rec.id, rec.sample_index, rec.status, rec.reason, rec.decision, rec.decided_by, rec.edited,"
    " rec.answer_len, rec.agreement, rec.score, substr(rec.answer, 1, 160)"
)
_LIST_KEYS = (
    "row",
    "id",
    "sample_index",
    "status",
    "reason",
    "decision",
    "decided_by",
    "edited",
    "length",
    "agreement",
    "score",
    "preview",
)


class Search:
    """The rowids whose input or answer contains the search text, kept in a temporary table.

    Filled once per search text (and topped up with rows indexed since), so changing any other filter, the
    sort or the page reuses it. A text of three or more characters asks the trigram index, unless one of its
    trigrams is in more than ``FTS_CAP`` rows (the index's own vocabulary says so in milliseconds): verifying
    that many candidates costs more than one scan of the text, which is also what a shorter text gets.
    """

    FTS_CAP = 5_000
    TRIGRAMS_CHECKED = 4  # the rarest of a few trigrams already bounds the matches

    def __init__(self, index: RunIndex) -> None:
        self.db = index.db
        self.index = index
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS hits (rowid INTEGER PRIMARY KEY)")
        self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_vocab USING fts5vocab(s, fts, row)")
        self.text: str | None = None
        self.generation: str | None = None
        self.upto = 0

    def _rare(self, text: str) -> bool:
        """Whether some trigram of ``text`` is in at most FTS_CAP indexed rows."""
        folded = text.lower()  # the trigram tokenizer folds case
        trigrams = sorted({folded[i : i + 3] for i in range(len(folded) - 2)})
        step = max(1, len(trigrams) // self.TRIGRAMS_CHECKED)
        for trigram in trigrams[::step][: self.TRIGRAMS_CHECKED]:
            row = self.db.execute("SELECT doc FROM temp.fts_vocab WHERE term = ?", (trigram,)).fetchone()
            if row is None or row[0] <= self.FTS_CAP:
                return True
        return False

    def prepare(self, text: str) -> None:
        generation = self.index.generation()
        if text != self.text or generation != self.generation:
            self.db.execute("DELETE FROM temp.hits")
            self.text, self.generation, self.upto = text, generation, 0
        last = self.db.execute("SELECT max(rowid) FROM s.body").fetchone()[0] or 0
        if last <= self.upto:
            return
        start = self.upto
        covered = min(self.index.fts_upto, last)
        usable = len(text) >= MIN_INDEXED_QUERY and not any(c in text for c in "%_\\")
        if usable and covered > start and self._rare(text):
            # The trigram index's LIKE takes no ESCAPE clause, hence the plain pattern and the guard above.
            self.db.execute(
                "INSERT INTO temp.hits (rowid) SELECT rowid FROM s.fts WHERE text LIKE ? AND rowid > ?"
                " AND rowid <= ?",
                (f"%{text}%", start, covered),
            )
            start = covered
        self.db.execute(
            "INSERT INTO temp.hits (rowid) SELECT rowid FROM s.body WHERE rowid > ? AND rowid <= ?"
            " AND text LIKE ? ESCAPE '\\'",
            (start, last, _like_pattern(text)),
        )
        self.upto = last


def list_page(index: RunIndex, query: ListQuery, search: Search) -> dict[str, Any]:
    """One page of rows and the number of rows the filters match."""
    if query.q.strip():
        search.prepare(query.q.strip())
    where, params = where_clause(query)
    total = index.db.execute(f"SELECT count(*) FROM rec{where}", params).fetchone()[0]
    rows = index.db.execute(
        f"SELECT {_LIST_COLUMNS} FROM rec{where} ORDER BY {SORTS[query.sort]} LIMIT ? OFFSET ?",
        [*params, query.limit, query.offset],
    ).fetchall()
    return {
        "total": total,
        "offset": query.offset,
        "limit": query.limit,
        "rows": [dict(zip(_LIST_KEYS, row, strict=True)) for row in rows],
    }


def progress(index: RunIndex) -> dict[str, Any]:
    """Counts for the header: the decisions among accepted records, and what the filters did."""
    counts = {
        "accepted": 0,
        "approved": 0,
        "edited": 0,
        "rejected": 0,
        "judge_rejected": 0,
        "unreviewed": 0,
        "filter_rejected": 0,
        "failed": 0,
        "scored": 0,
    }
    for status, decision, by, edited, scored, count in index.db.execute(
        "SELECT status, decision, decided_by, edited, score IS NOT NULL, count(*) FROM rec"
        " GROUP BY status, decision, decided_by, edited, score IS NOT NULL"
    ):
        if status == "rejected":
            counts["filter_rejected"] += count
        elif status == "failed":
            counts["failed"] += count
        else:
            counts["accepted"] += count
            counts["scored"] += count if scored else 0
            if decision == APPROVE:
                counts["approved"] += count
                counts["edited"] += count if edited else 0
            elif decision == REJECT:
                counts["judge_rejected" if by == JUDGE else "rejected"] += count
            else:
                counts["unreviewed"] += count
    reasons = [
        {"status": status, "reason": reason, "count": count}
        for status, reason, count in index.db.execute(
            "SELECT status, reason, count(*) FROM rec WHERE reason IS NOT NULL GROUP BY status, reason ORDER BY 1, 3 DESC"
        )
    ]
    return {"counts": counts, "reasons": reasons}
