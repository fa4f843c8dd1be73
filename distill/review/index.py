"""A SQLite index over a run's shards, so a 100,000-record run pages, filters and sorts in milliseconds.

The shards stay the truth and are only read. ``<run dir>/review/index.sqlite3`` holds one row per record
(where its line is, its status, reason, answer length, sample agreement, judge score, latest decision) and
``search.sqlite3`` the searchable text (input and answer) with an FTS5 trigram index, which finds any
substring of three or more characters in Chinese as in English. Both are caches: deleting them costs one
rebuild.

Reading is incremental: each shard's indexed byte count is kept, and only complete lines past it are read,
so reopening a run, or one still generating, reads just the new records. A shard that shrank, vanished or was
replaced (``--retry-failed`` moves failures aside) means the rows are dropped and read again.

Two connections, so the page never waits for indexing: the owner's (`db`: every query, and the mirror of each
decision just logged) and a background indexer's, which reads new shard lines in chunks, then fills the
trigram index, then polls the shards every two seconds. SQLite's WAL lets readers go on while it writes;
a page opened on a run being indexed lists what is indexed so far.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.engine.filters import output_hash
from distill.engine.records import FailureRecord, Record, RejectedRecord, parse_record
from distill.engine.shards import list_shards

from distill.review.agreement import agreements
from distill.review.decisions import CLEAR, REVIEW_DIR, Decision, ReviewState, decisions_path
from distill.review.edits import signed_hash
from distill.review.log import read_entries

INDEX_VERSION = "3"
INDEX_NAME = "index.sqlite3"
SEARCH_NAME = "search.sqlite3"
FIRST_CHUNK = 500  # records read before the page is served
INGEST_CHUNK = 2_000  # records per indexing transaction: a decision waits at most this long for the lock
FTS_CHUNK = 2_000  # rows per full-text transaction
POLL_S = 2.0  # how often the indexer looks for new shard lines (a run still generating)

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS shard (name TEXT PRIMARY KEY, inode INTEGER, done INTEGER, lines INTEGER);
CREATE TABLE IF NOT EXISTS rec (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, sample_index INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, shard TEXT NOT NULL, offset INTEGER NOT NULL, nbytes INTEGER NOT NULL,
    answer TEXT, answer_len INTEGER, hash INTEGER, agreement REAL, score REAL,
    decision TEXT, decided_by TEXT, decided_seq INTEGER, edited INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS rec_key ON rec (id, sample_index);
CREATE TABLE IF NOT EXISTS decision (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, sample_index INTEGER NOT NULL, decision TEXT NOT NULL,
    reason TEXT, reviewer TEXT, at TEXT, by TEXT, thinking TEXT, output TEXT
);
CREATE INDEX IF NOT EXISTS decision_key ON decision (id, sample_index);
CREATE TABLE IF NOT EXISTS score (id TEXT NOT NULL, sample_index INTEGER NOT NULL, score REAL,
                                  PRIMARY KEY (id, sample_index));
CREATE TABLE IF NOT EXISTS s.meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS s.body (rowid INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS s.fts USING fts5 (
    text, content='body', content_rowid='rowid', tokenize='trigram', detail='none'
);
"""
# Made once the first full read is done (bulk inserts are several times faster without them). Each sort of
# the list has its own index, expressions included, so a deep page never sorts the whole table.
_SORT_INDEXES = """
CREATE INDEX IF NOT EXISTS rec_status ON rec (status, reason);
CREATE INDEX IF NOT EXISTS rec_len ON rec (answer_len IS NULL, answer_len, rowid);
CREATE INDEX IF NOT EXISTS rec_len_desc ON rec (answer_len IS NULL, answer_len DESC, rowid);
CREATE INDEX IF NOT EXISTS rec_agreement ON rec (agreement IS NULL, agreement, rowid);
CREATE INDEX IF NOT EXISTS rec_score ON rec (score IS NULL, score, rowid);
CREATE INDEX IF NOT EXISTS rec_score_desc ON rec (score IS NULL, score DESC, rowid);
CREATE INDEX IF NOT EXISTS rec_decided ON rec (decided_seq IS NULL, decided_seq DESC, rowid);
CREATE INDEX IF NOT EXISTS rec_progress ON rec (status, decision, decided_by, edited, score IS NOT NULL);
CREATE INDEX IF NOT EXISTS rec_hash ON rec (hash);
"""


def _connect(directory: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(
        directory / INDEX_NAME, timeout=60, isolation_level=None, check_same_thread=False
    )
    connection.execute("ATTACH DATABASE ? AS s", (str(directory / SEARCH_NAME),))
    for schema in ("main", "s"):
        connection.execute(f"PRAGMA {schema}.journal_mode=WAL")
        # A cache: losing its last transaction in a power cut costs a re-read, never a decision.
        connection.execute(f"PRAGMA {schema}.synchronous=NORMAL")
    return connection


def _meta(db: sqlite3.Connection, key: str, schema: str = "main") -> str | None:
    row = db.execute(f"SELECT value FROM {schema}.meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def _set_meta(db: sqlite3.Connection, key: str, value: str, schema: str = "main") -> None:
    db.execute(f"INSERT OR REPLACE INTO {schema}.meta (key, value) VALUES (?, ?)", (key, value))


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): writers queue for the lock instead of failing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


@dataclass
class RefreshStats:
    rebuilt: bool = False
    new_records: int = 0


def iter_new_lines(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each complete line from byte ``start``: a line still being written waits."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset = start
        for line in handle:
            if not line.endswith(b"\n"):
                return
            yield offset, line
            offset += len(line)


def _row_of(record: Record) -> tuple[str | None, str | None, str]:
    """(reason, answer, searchable text) of one record."""
    if isinstance(record, FailureRecord):
        return record.error_class, None, record.message
    answer = record.output
    if answer is None and isinstance(record, RejectedRecord):
        answer = record.response  # a reply the parser could not split is shown whole
    reason = record.reject_reason if isinstance(record, RejectedRecord) else None
    return reason, answer, f"{record.instruction}\n{answer or ''}"


class _Reader:
    """Brings the rows in line with the shards: what the indexer thread (or a synchronous refresh) runs."""

    def __init__(self, db: sqlite3.Connection, run_dir: Path) -> None:
        self.db = db
        self.run_dir = run_dir

    def _needs_rebuild(self, shards: list[Path]) -> bool:
        present = {path.name: path for path in shards}
        for name, inode, done in self.db.execute("SELECT name, inode, done FROM shard"):
            path = present.get(name)
            if path is None:
                return True
            stat = path.stat()
            if stat.st_ino != inode or stat.st_size < done:
                return True
        return False

    def _clear(self) -> None:
        with _Transaction(self.db) as db:
            db.execute("DELETE FROM rec")
            db.execute("DELETE FROM shard")
            db.execute("DELETE FROM s.body")
            db.execute("INSERT INTO s.fts (fts) VALUES ('delete-all')")
            _set_meta(db, "fts_upto", "0", "s")
            # Row ids are reused from here on: anything that remembers row ids (a search) must forget them.
            _set_meta(db, "generation", str(int(_meta(db, "generation") or 0) + 1))

    def step(self, budget: int = INGEST_CHUNK) -> RefreshStats:
        """Read at most ``budget`` new records in one transaction."""
        stats = RefreshStats()
        shards = list_shards(self.run_dir)
        if self._needs_rebuild(shards):
            self._clear()
            stats.rebuilt = True
        with _Transaction(self.db) as db:
            done = {
                name: (end, lines) for name, end, lines in db.execute("SELECT name, done, lines FROM shard")
            }
            if all(p.stat().st_size <= done.get(p.name, (0, 0))[0] for p in shards):
                return stats
            first_new = (db.execute("SELECT max(rowid) FROM rec").fetchone()[0] or 0) + 1
            rowid, touched = first_new, set()
            for path in shards:
                if rowid - first_new >= budget:
                    break
                start, number = done.get(path.name, (0, 0))
                inode = path.stat().st_ino
                kind = path.name.split("-", 1)[0]
                rows, bodies, end = [], [], start
                for offset, line in iter_new_lines(path, start):
                    end = offset + len(line)
                    number += 1
                    if line.isspace():
                        continue
                    # The records contract validates the line; a damaged one stops indexing, naming file:line.
                    record = parse_record(kind, line, f"{path}:{number}")
                    reason, answer, text = _row_of(record)
                    accepted = kind == "accepted" and answer is not None
                    digest = signed_hash(output_hash(answer)) if accepted else None
                    length = len(answer) if answer is not None else None
                    rows.append(
                        (
                            rowid,
                            record.id,
                            record.sample_index,
                            kind,
                            reason,
                            path.name,
                            offset,
                            len(line),
                            answer,
                            length,
                            digest,
                        )
                    )
                    bodies.append((rowid, text))
                    if accepted:
                        touched.add(record.id)
                    rowid += 1
                    if rowid - first_new >= budget:
                        break
                if end == start:
                    continue
                db.executemany(
                    "INSERT INTO rec (rowid, id, sample_index, status, reason, shard, offset, nbytes, answer,"
                    " answer_len, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                db.executemany("INSERT INTO s.body (rowid, text) VALUES (?, ?)", bodies)
                db.execute(
                    "INSERT OR REPLACE INTO shard (name, inode, done, lines) VALUES (?, ?, ?, ?)",
                    (path.name, inode, end, number),
                )
            if rowid > first_new:
                self._agreement(touched)
                self._apply_known(first_new)
            stats.new_records = rowid - first_new
        return stats

    def _agreement(self, ids: set[str]) -> None:
        """Agreement of every accepted sample of the inputs that got a new one (older samples included)."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS touched (id TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM touched")
        self.db.executemany("INSERT INTO touched (id) VALUES (?)", [(i,) for i in ids])
        groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for rowid, row_id, answer in self.db.execute(
            "SELECT rec.rowid, rec.id, rec.answer FROM touched JOIN rec ON rec.id = touched.id"
            " WHERE rec.status = 'accepted'"
        ):
            groups[row_id].append((rowid, answer or ""))
        updates = []
        for members in groups.values():
            for (rowid, _), value in zip(members, agreements([a for _, a in members]), strict=True):
                updates.append((value, rowid))
        self.db.executemany("UPDATE rec SET agreement = ? WHERE rowid = ?", updates)

    def _apply_known(self, first_new: int) -> None:
        """Decisions and scores recorded before their record was indexed apply to it now."""
        self.db.execute(
            "UPDATE rec SET decision = nullif(d.decision, ?), decided_by = d.by, decided_seq = d.seq,"
            " edited = d.output IS NOT NULL AND d.decision != ?"
            " FROM (SELECT id, sample_index, max(seq) AS seq FROM decision GROUP BY id, sample_index) AS latest"
            " JOIN decision AS d ON d.seq = latest.seq"
            " WHERE rec.rowid >= ? AND rec.status = 'accepted' AND rec.id = latest.id"
            " AND rec.sample_index = latest.sample_index",
            (CLEAR, CLEAR, first_new),
        )
        self.db.execute(
            "UPDATE rec SET decided_by = NULL WHERE rowid >= ? AND decision IS NULL", (first_new,)
        )
        edited = self.db.execute(
            "SELECT rec.rowid, d.output FROM rec JOIN decision AS d ON d.seq = rec.decided_seq"
            " WHERE rec.rowid >= ? AND rec.edited = 1",
            (first_new,),
        ).fetchall()
        self.db.executemany(
            "UPDATE rec SET hash = ? WHERE rowid = ?",
            [(signed_hash(output_hash(output)), rowid) for rowid, output in edited],
        )
        self.db.execute(
            "UPDATE rec SET score = sc.score FROM score AS sc WHERE rec.rowid >= ? AND rec.status = 'accepted'"
            " AND rec.id = sc.id AND rec.sample_index = sc.sample_index",
            (first_new,),
        )

    def fts_step(self) -> bool:
        """Put the next chunk of rows into the trigram index; False when it is caught up."""
        upto = int(_meta(self.db, "fts_upto", "s") or 0)
        last = self.db.execute("SELECT max(rowid) FROM s.body").fetchone()[0] or 0
        if last <= upto:
            return False
        end = min(last, upto + FTS_CHUNK)
        with _Transaction(self.db) as db:
            db.execute(
                "INSERT INTO s.fts (rowid, text) SELECT rowid, text FROM s.body WHERE rowid > ? AND rowid <= ?",
                (upto, end),
            )
            _set_meta(db, "fts_upto", str(end), "s")
        return True


class RunIndex:
    """The index of one run directory: `refresh()` or `start()` it, query `db`, `close()` when done."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / REVIEW_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = _connect(self.dir)
        self.db.executescript("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);")
        if _meta(self.db, "version") not in (None, INDEX_VERSION):  # made by another distill: start over
            self.db.close()
            for name in (INDEX_NAME, SEARCH_NAME):
                for suffix in ("", "-wal", "-shm"):
                    (self.dir / f"{name}{suffix}").unlink(missing_ok=True)
            self.db = _connect(self.dir)
        self.db.executescript(_TABLES)
        _set_meta(self.db, "version", INDEX_VERSION)
        self._reader = _Reader(self.db, self.run_dir)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: BaseException | None = None

    # -- keeping up with the shards ------------------------------------------------------------------

    def refresh(self) -> RefreshStats:
        """Mirror new log entries and read every new shard line now, in this thread (no background indexer)."""
        self.replay_log()
        total = RefreshStats()
        while True:
            stats = self._reader.step()
            total.rebuilt |= stats.rebuilt
            total.new_records += stats.new_records
            if stats.new_records == 0:
                break
        self._finish_first_read()
        return total

    def _finish_first_read(self) -> None:
        self.db.executescript(_SORT_INDEXES)

    def start(self) -> None:
        """Index in a background thread from now on: new records, then the trigram index, then polling.

        A first small chunk is read right here, so the page never opens on an empty list."""
        if self._thread is None:
            self._reader.step(FIRST_CHUNK)
            self._thread = threading.Thread(target=self._run, name="review-indexer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        connection = _connect(self.dir)
        reader = _Reader(connection, self.run_dir)
        try:
            first_read_done = False
            while not self._stop.is_set():
                if reader.step().new_records:
                    continue
                if not first_read_done:
                    connection.executescript(_SORT_INDEXES)
                    first_read_done = True
                if reader.fts_step():
                    continue
                self._stop.wait(POLL_S)
        except BaseException as exc:  # noqa: BLE001 - shown on the page; queries go on with what is indexed
            self.error = exc
        finally:
            connection.close()

    def indexing(self) -> dict[str, Any]:
        """For the page: bytes of shard lines not read yet, rows not in the trigram index yet, any error."""
        done = dict(self.db.execute("SELECT name, done FROM shard").fetchall())
        pending = 0
        for path in list_shards(self.run_dir):
            with contextlib.suppress(FileNotFoundError):
                pending += max(0, path.stat().st_size - done.get(path.name, 0))
        last = self.db.execute("SELECT max(rowid) FROM s.body").fetchone()[0] or 0
        return {
            "pending_bytes": pending,
            "fulltext_behind": max(0, last - self.fts_upto),
            "error": str(self.error) if self.error else None,
        }

    def wait_until_current(self, timeout: float = 600.0) -> bool:
        """Block until every shard line is indexed and in the trigram index (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            state = self.indexing()
            if state["pending_bytes"] == 0 and state["fulltext_behind"] == 0:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.db.close()

    def generation(self) -> str:
        """Changes whenever the rows are read again from scratch."""
        return _meta(self.db, "generation") or "0"

    @property
    def fts_upto(self) -> int:
        """Rows up to this rowid are in the trigram index; later ones are searched by a scan."""
        return int(_meta(self.db, "fts_upto", "s") or 0)

    # -- decisions and scores ------------------------------------------------------------------------

    def replay_log(self) -> int:
        """Mirror the log entries this index has not seen (written while no page was open)."""
        path = decisions_path(self.run_dir)
        start = int(_meta(self.db, "log_offset") or 0)
        size = path.stat().st_size if path.exists() else 0
        state, count = ReviewState(), 0
        with _Transaction(self.db) as db:
            if size < start:  # the log was replaced: forget what the old one said
                db.execute("DELETE FROM decision")
                db.execute(
                    "UPDATE rec SET decision = NULL, decided_by = NULL, decided_seq = NULL, edited = 0"
                )
                start = 0
            for seq, entry in read_entries(path, start):
                applied = state.apply(entry, seq, str(path))
                if applied is not None:
                    self._mirror(*applied)
                    count += 1
                elif state.finished_at:
                    _set_meta(db, "finished_at", state.finished_at)
                _set_meta(db, "log_offset", str(seq))
        return count

    def _mirror(self, key: tuple[str, int], decision: Decision) -> None:
        row_id, sample_index = key
        self.db.execute(
            "INSERT OR REPLACE INTO decision (seq, id, sample_index, decision, reason, reviewer, at, by, thinking,"
            " output) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                decision.seq,
                row_id,
                sample_index,
                decision.decision,
                decision.reason,
                decision.reviewer,
                decision.at,
                decision.by,
                decision.thinking,
                decision.output,
            ),
        )
        latest = None if decision.decision == CLEAR else decision.decision
        edited = decision.edited and latest is not None
        self.db.execute(
            "UPDATE rec SET decision = ?, decided_by = ?, decided_seq = ?, edited = ?,"
            " hash = coalesce(?, CASE WHEN answer IS NULL THEN NULL ELSE hash END)"
            " WHERE id = ? AND sample_index = ? AND status = 'accepted'",
            (
                latest,
                decision.by if latest else None,
                decision.seq,
                int(edited),
                signed_hash(output_hash(decision.output)) if edited else None,
                row_id,
                sample_index,
            ),
        )
        if not edited:  # back to the original answer's hash (an earlier edit may have replaced it)
            row = self.db.execute(
                "SELECT answer FROM rec WHERE id = ? AND sample_index = ? AND status = 'accepted'", key
            ).fetchone()
            if row is not None and row[0] is not None:
                self.db.execute(
                    "UPDATE rec SET hash = ? WHERE id = ? AND sample_index = ? AND status = 'accepted'",
                    (signed_hash(output_hash(row[0])), row_id, sample_index),
                )
        _set_meta(self.db, "log_offset", str(decision.seq))

    def apply_logged(self, key: tuple[str, int], decision: Decision) -> None:
        """Mirror one entry this process just appended to the log (already durable there)."""
        with _Transaction(self.db):
            self._mirror(key, decision)

    def note_finished(self, at: str, offset: int) -> None:
        with _Transaction(self.db) as db:
            _set_meta(db, "finished_at", at)
            _set_meta(db, "log_offset", str(offset))

    def finished_at(self) -> str | None:
        return _meta(self.db, "finished_at") or None

    def load_scores(self, scores: dict[tuple[str, int], float | None]) -> None:
        """Replace every judge score (records indexed later pick theirs up as they come)."""
        with _Transaction(self.db) as db:
            db.execute("DELETE FROM score")
            db.executemany(
                "INSERT INTO score (id, sample_index, score) VALUES (?, ?, ?)",
                [(row_id, sample_index, score) for (row_id, sample_index), score in scores.items()],
            )
            db.execute("UPDATE rec SET score = NULL WHERE score IS NOT NULL")
            db.execute(
                "UPDATE rec SET score = sc.score FROM score AS sc WHERE rec.status = 'accepted'"
                " AND rec.id = sc.id AND rec.sample_index = sc.sample_index"
            )

    # -- reading records -----------------------------------------------------------------------------

    def read_record(self, shard: str, offset: int, nbytes: int) -> dict[str, Any]:
        """The record whose line starts at ``offset``, validated by the records contract, as a dict."""
        fd = os.open(self.run_dir / shard, os.O_RDONLY)
        try:
            line = os.pread(fd, nbytes, offset)
        finally:
            os.close(fd)
        where = f"{self.run_dir / shard} (byte {offset})"
        return parse_record(shard.split("-", 1)[0], line, where).model_dump()
