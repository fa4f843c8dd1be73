"""A SQLite index over a run's shards, so a 100,000-record run pages, filters and sorts in milliseconds.

The shards stay the truth and are only read. ``<run dir>/review/index.sqlite3`` holds one row per record
(where its line is, its status, reason, answer length, sample agreement, judge score, latest decision) and
``search.sqlite3`` the searchable text (input and answer) with an FTS5 trigram index, which finds any
substring of three or more characters in Chinese as in English. Both are caches: deleting them costs one
rebuild.

Refreshing is incremental: each shard's indexed byte count is kept, and only complete lines past it are read,
so reopening a run, or one that is still generating, reads just the new records. A shard that shrank, vanished
or was replaced (a `--retry-failed` moves failures aside) means a full rebuild. The decision log is replayed
from the last offset seen, in the same transaction as the rows it updates.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from distill.engine.filters import output_hash
from distill.engine.shards import list_shards

from distill.review.agreement import agreements
from distill.review.decisions import CLEAR, REVIEW_DIR, Decision, ReviewState, decisions_path
from distill.review.edits import signed_hash
from distill.review.log import read_entries

INDEX_VERSION = "1"
INDEX_NAME = "index.sqlite3"
SEARCH_NAME = "search.sqlite3"
_FTS_CHUNK = 1000  # rows per full-text transaction: keeps each write short beside the page's own writes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS shard (name TEXT PRIMARY KEY, inode INTEGER, done INTEGER);
CREATE TABLE IF NOT EXISTS rec (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, sample_index INTEGER NOT NULL, status TEXT NOT NULL,
    reason TEXT, shard TEXT NOT NULL, offset INTEGER NOT NULL, nbytes INTEGER NOT NULL,
    answer TEXT, answer_len INTEGER, hash INTEGER, agreement REAL, score REAL,
    decision TEXT, decided_by TEXT, decided_seq INTEGER, edited INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS rec_key ON rec (id, sample_index);
CREATE INDEX IF NOT EXISTS rec_status ON rec (status, reason);
CREATE INDEX IF NOT EXISTS rec_len ON rec (answer_len);
CREATE INDEX IF NOT EXISTS rec_agreement ON rec (agreement);
CREATE INDEX IF NOT EXISTS rec_score ON rec (score);
CREATE INDEX IF NOT EXISTS rec_decision ON rec (decision);
CREATE INDEX IF NOT EXISTS rec_hash ON rec (hash);
CREATE TABLE IF NOT EXISTS decision (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL, sample_index INTEGER NOT NULL, decision TEXT NOT NULL,
    reason TEXT, reviewer TEXT, at TEXT, by TEXT, thinking TEXT, output TEXT
);
CREATE INDEX IF NOT EXISTS decision_key ON decision (id, sample_index);
"""
_SEARCH_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS body (rowid INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5 (
    text, content='body', content_rowid='rowid', tokenize='trigram', detail='none'
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")  # a cache: losing its last transaction costs a re-read
    return connection


@dataclass
class RefreshStats:
    rebuilt: bool = False
    new_records: int = 0
    new_decisions: int = 0


def iter_new_lines(path: Path, start: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each complete line from byte ``start``: a line still being written is left for later."""
    with path.open("rb") as handle:
        handle.seek(start)
        offset = start
        for line in handle:
            if not line.endswith(b"\n"):
                return
            yield offset, line
            offset += len(line)


def _row_of(kind: str, record: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """(reason, answer, searchable text) of one record."""
    if kind == "failed":
        message = str(record.get("message") or "")
        return str(record.get("error_class") or "failed"), None, message
    answer = record.get("output")
    if answer is None:
        answer = record.get("response")
    reason = record.get("reject_reason") if kind == "rejected" else None
    return reason, answer, f"{record.get('instruction') or ''}\n{answer or ''}"


class RunIndex:
    """The index of one run directory. Open it, `refresh()` it, query it; `close()` when done."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / REVIEW_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one writer at a time within this process
        self._fts_wake = threading.Event()
        self._fts_stop = threading.Event()
        self._fts_thread: threading.Thread | None = None
        self.fts_error: BaseException | None = None
        self._open()

    # -- files -----------------------------------------------------------------------------------------

    def _open(self) -> None:
        self.db = _connect(self.dir / INDEX_NAME)
        self.db.execute("ATTACH DATABASE ? AS s", (str(self.dir / SEARCH_NAME),))
        version = self._meta("version")
        if version not in (None, INDEX_VERSION):
            self.db.close()
            self._delete_files()
            self.db = _connect(self.dir / INDEX_NAME)
            self.db.execute("ATTACH DATABASE ? AS s", (str(self.dir / SEARCH_NAME),))
        self.db.executescript(_SCHEMA)
        self.db.executescript(_SEARCH_SCHEMA.replace("EXISTS ", "EXISTS s."))
        self._set_meta("version", INDEX_VERSION)

    def _meta(self, key: str, db: str = "main") -> str | None:
        try:
            row = self.db.execute(f"SELECT value FROM {db}.meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def _set_meta(self, key: str, value: str, db: str = "main") -> None:
        self.db.execute(f"INSERT OR REPLACE INTO {db}.meta (key, value) VALUES (?, ?)", (key, value))

    def _delete_files(self) -> None:
        for name in (INDEX_NAME, SEARCH_NAME):
            for suffix in ("", "-wal", "-shm"):
                (self.dir / f"{name}{suffix}").unlink(missing_ok=True)

    def close(self) -> None:
        self._stop_fts()
        self.db.close()

    # -- refresh ---------------------------------------------------------------------------------------

    def _needs_rebuild(self, shards: list[Path]) -> bool:
        indexed = {
            name: (inode, done)
            for name, inode, done in self.db.execute("SELECT name, inode, done FROM shard")
        }
        present = {path.name: path for path in shards}
        for name, (inode, done) in indexed.items():
            path = present.get(name)
            if path is None:
                return True
            stat = path.stat()
            if stat.st_ino != inode or stat.st_size < done:
                return True
        rows = self.db.execute("SELECT max(rowid) FROM rec").fetchone()[0]
        bodies = self.db.execute("SELECT max(rowid) FROM s.body").fetchone()[0]
        return rows != bodies

    def refresh(self) -> RefreshStats:
        """Read what is new in the shards and the decision log; rebuild when a shard changed under us."""
        with self._lock:
            stats = RefreshStats()
            shards = list_shards(self.run_dir)
            if self._needs_rebuild(shards):
                self._stop_fts()
                self.db.close()
                self._delete_files()
                self._open()
                stats.rebuilt = True
            self.db.execute("BEGIN")
            try:
                stats.new_records = self._ingest_shards(shards)
                stats.new_decisions = self._replay_decisions()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self._start_fts()
            return stats

    def _ingest_shards(self, shards: list[Path]) -> int:
        done = {name: value for name, value in self.db.execute("SELECT name, done FROM shard")}
        first_new = (self.db.execute("SELECT max(rowid) FROM rec").fetchone()[0] or 0) + 1
        rowid = first_new
        touched: set[str] = set()
        for path in shards:
            kind = path.name.split("-", 1)[0]
            start = done.get(path.name, 0)
            stat = path.stat()
            if stat.st_size <= start:
                continue
            rows, bodies, end = [], [], start
            for offset, line in iter_new_lines(path, start):
                end = offset + len(line)
                if not line.strip():
                    continue
                try:
                    record = orjson.loads(line)
                    row_id, sample_index = str(record["id"]), int(record["sample_index"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue  # the engine never writes such a line; a hand-edited shard is shown without it
                reason, answer, text = _row_of(kind, record)
                digest = (
                    signed_hash(output_hash(answer)) if kind == "accepted" and answer is not None else None
                )
                rows.append(
                    (
                        rowid,
                        row_id,
                        sample_index,
                        kind,
                        reason,
                        path.name,
                        offset,
                        len(line),
                        answer,
                        len(answer) if answer is not None else None,
                        digest,
                    )
                )
                bodies.append((rowid, text))
                if kind == "accepted":
                    touched.add(row_id)
                rowid += 1
            self.db.executemany(
                "INSERT INTO rec (rowid, id, sample_index, status, reason, shard, offset, nbytes, answer, answer_len,"
                " hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.db.executemany("INSERT INTO s.body (rowid, text) VALUES (?, ?)", bodies)
            self.db.execute(
                "INSERT OR REPLACE INTO shard (name, inode, done) VALUES (?, ?, ?)",
                (path.name, stat.st_ino, end),
            )
        if rowid > first_new:
            self._update_agreement(touched)
            # Decisions logged before their record was indexed (a run still generating) apply now.
            self.db.execute(
                "UPDATE rec SET decision = d.decision, decided_by = d.by, decided_seq = d.seq,"
                " edited = d.output IS NOT NULL FROM (SELECT id, sample_index, max(seq) AS seq FROM decision"
                " GROUP BY id, sample_index) AS latest JOIN decision AS d ON d.seq = latest.seq"
                " WHERE rec.rowid >= ? AND rec.status = 'accepted' AND rec.id = latest.id"
                " AND rec.sample_index = latest.sample_index",
                (first_new,),
            )
            self.db.execute(
                "UPDATE rec SET decision = NULL, decided_by = NULL, edited = 0"
                " WHERE rowid >= ? AND decision = ?",
                (first_new, CLEAR),
            )
        return rowid - first_new

    def _update_agreement(self, ids: set[str]) -> None:
        batch = list(ids)
        for start in range(0, len(batch), 500):
            chunk = batch[start : start + 500]
            groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
            marks = ",".join("?" * len(chunk))
            for rowid, row_id, answer in self.db.execute(
                f"SELECT rowid, id, answer FROM rec WHERE status = 'accepted' AND id IN ({marks})", chunk
            ):
                groups[row_id].append((rowid, answer or ""))
            updates = []
            for members in groups.values():
                for (rowid, _), value in zip(members, agreements([a for _, a in members]), strict=True):
                    updates.append((value, rowid))
            self.db.executemany("UPDATE rec SET agreement = ? WHERE rowid = ?", updates)

    def _replay_decisions(self) -> int:
        path = decisions_path(self.run_dir)
        start = int(self._meta("log_offset") or 0)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < start:  # the log was replaced: forget what it said and read it all again
            self.db.execute("DELETE FROM decision")
            self.db.execute(
                "UPDATE rec SET decision = NULL, decided_by = NULL, decided_seq = NULL, edited = 0"
            )
            start = 0
        state = ReviewState()
        count = 0
        for seq, entry in read_entries(path, start):
            applied = state.apply(entry, seq, str(path))
            if applied is not None:
                self.record_decision(*applied)
                count += 1
            else:
                self._set_meta("finished_at", state.finished_at or "")
            self._set_meta("log_offset", str(seq))
        return count

    def record_decision(self, key: tuple[str, int], decision: Decision) -> None:
        """Mirror one logged decision (already durable in the log) into the index."""
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
        self.db.execute(
            "UPDATE rec SET decision = ?, decided_by = ?, decided_seq = ?, edited = ?, hash = ?"
            " WHERE id = ? AND sample_index = ? AND status = 'accepted'",
            (
                latest,
                decision.by if latest else None,
                decision.seq,
                int(decision.edited and latest is not None),
                signed_hash(output_hash(decision.output)) if decision.edited else self._original_hash(key),
                row_id,
                sample_index,
            ),
        )
        self._set_meta("log_offset", str(decision.seq))

    def _original_hash(self, key: tuple[str, int]) -> int | None:
        row = self.db.execute(
            "SELECT answer FROM rec WHERE id = ? AND sample_index = ? AND status = 'accepted'", key
        ).fetchone()
        return signed_hash(output_hash(row[0])) if row and row[0] is not None else None

    def apply_logged(self, key: tuple[str, int], decision: Decision) -> None:
        """After an entry was appended to the log by this process: mirror it in one transaction."""
        with self._lock:
            self.db.execute("BEGIN")
            try:
                self.record_decision(key, decision)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def note_finished(self, at: str, offset: int) -> None:
        with self._lock:
            self._set_meta("finished_at", at)
            self._set_meta("log_offset", str(offset))

    def load_scores(self, scores: dict[tuple[str, int], float | None]) -> None:
        """Replace every judge score (the scores file is small and rewritten whole)."""
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE rec SET score = NULL WHERE score IS NOT NULL")
            self.db.executemany(
                "UPDATE rec SET score = ? WHERE id = ? AND sample_index = ? AND status = 'accepted'",
                [(score, row_id, sample_index) for (row_id, sample_index), score in scores.items()],
            )
            self.db.execute("COMMIT")

    # -- full text -------------------------------------------------------------------------------------

    @property
    def fts_upto(self) -> int:
        """Rows up to this rowid are in the trigram index; later ones are searched by a scan."""
        return int(self._meta("fts_upto", "s") or 0)

    def _start_fts(self) -> None:
        if self._fts_thread is None or not self._fts_thread.is_alive():
            self._fts_stop.clear()
            self._fts_thread = threading.Thread(target=self._fts_loop, name="review-fulltext", daemon=True)
            self._fts_thread.start()
        self._fts_wake.set()

    def _stop_fts(self) -> None:
        if self._fts_thread is not None:
            self._fts_stop.set()
            self._fts_wake.set()
            self._fts_thread.join()
            self._fts_thread = None

    def _fts_loop(self) -> None:
        try:
            search = _connect(self.dir / SEARCH_NAME)
            try:
                while not self._fts_stop.is_set():
                    self._fts_wake.wait()
                    self._fts_wake.clear()
                    while not self._fts_stop.is_set() and self._fts_step(search):
                        pass
            finally:
                search.close()
        except BaseException as exc:  # noqa: BLE001 - reported by `fts_state`, search falls back to scans
            self.fts_error = exc

    @staticmethod
    def _fts_step(search: sqlite3.Connection) -> bool:
        """Index the next chunk of rows; False when caught up."""
        row = search.execute("SELECT value FROM meta WHERE key = 'fts_upto'").fetchone()
        upto = int(row[0]) if row else 0
        last = search.execute("SELECT max(rowid) FROM body").fetchone()[0] or 0
        if last <= upto:
            return False
        end = min(last, upto + _FTS_CHUNK)
        search.execute("BEGIN")
        search.execute(
            "INSERT INTO fts (rowid, text) SELECT rowid, text FROM body WHERE rowid > ? AND rowid <= ?",
            (upto, end),
        )
        search.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('fts_upto', ?)", (str(end),))
        search.execute("COMMIT")
        return True

    def wait_for_fulltext(self, timeout: float | None = None) -> bool:
        """Block until the trigram index covers every row (tests, benchmarks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            last = self.db.execute("SELECT max(rowid) FROM s.body").fetchone()[0] or 0
            if self.fts_upto >= last:
                return True
            if self.fts_error is not None:
                raise self.fts_error
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    # -- reading records -------------------------------------------------------------------------------

    def read_record(self, shard: str, offset: int, nbytes: int) -> dict[str, Any]:
        fd = os.open(self.run_dir / shard, os.O_RDONLY)
        try:
            return orjson.loads(os.pread(fd, nbytes, offset))
        finally:
            os.close(fd)
