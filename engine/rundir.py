"""Where distill may write: an output directory is new, empty, or a distill run — never a root or a home.

`distill generate` appends to its output directory and `distill export` replaces files in its own, so both
refuse places where that would damage something that is not theirs: a filesystem root (``/`` or a mount
point), a home directory, and a non-empty directory that is not a distill run (a stray ``summary.json`` or an
unrelated ``done.keys`` is not adopted). The lock that keeps a second writer out lives here too, so export
can tell a run that is still being written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
from pathlib import Path

from distill.engine.manifest import MANIFEST_NAME

from distill.errors import UserError

LOCK_NAME = ".lock"
SUMMARY_NAME = "summary.json"
MIN_FREE_BYTES = 32 * 1024 * 1024
# Names distill itself writes into a run directory (run.json aside).
_OWN_NAMES = re.compile(
    r"^(?:(?:accepted|rejected|failed)-\d{5,}\.jsonl(?:\.torn)?|done\.keys(?:\.torn|\.tmp|\.rebuild)?"
    r"|summary\.json(?:\.tmp)?|run\.json\.tmp|failed-retried|retry-failed\.pending|\.lock)$"
)
_SHARD = re.compile(r"^(?:accepted|rejected|failed)-\d{5,}\.jsonl$")


def refuse_unsafe_location(path: Path, role: str) -> None:
    """A filesystem root or a home directory is never an output directory: its other files are not ours."""
    resolved = path.expanduser().resolve()
    if resolved == Path(resolved.anchor) or (resolved.is_dir() and os.path.ismount(resolved)):
        raise UserError(
            f"{path}: {role}: is the root of a filesystem; give a directory inside it (e.g. {resolved / 'runs'})"
        )
    homes = {Path.home().resolve(), Path("/root")}
    if resolved in homes or resolved.parent == Path("/home"):
        raise UserError(
            f"{path}: {role}: is a home directory; give a directory inside it (e.g. {resolved / 'runs'})"
        )


def check_run_dir(run_dir: Path) -> bool:
    """Refuse a directory that is neither new, empty, nor a distill run; True when it holds shards but no
    run.json (a run whose run.json was lost: adopting it needs --force, which `open_manifest` enforces)."""
    refuse_unsafe_location(run_dir, "output_dir")
    if not run_dir.exists():
        return False
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: output_dir: exists and is not a directory")
    names = sorted(os.listdir(run_dir))
    if MANIFEST_NAME in names:
        return False
    foreign = [name for name in names if not _OWN_NAMES.match(name)]
    has_shards = any(_SHARD.match(name) for name in names)
    if foreign or (not has_shards and set(names) - {LOCK_NAME}):
        shown = ", ".join((foreign or names)[:3]) + (", …" if len(foreign or names) > 3 else "")
        raise UserError(
            f"{run_dir}: output_dir: not empty and not a distill run directory (no {MANIFEST_NAME}; it holds "
            f"{shown}): give a new or empty directory, so nothing of yours is overwritten"
        )
    return has_shards


def lock_run_dir(run_dir: Path) -> int:
    """Create the directory if needed and take its lock: two writers would break exactly-once."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{run_dir}: output_dir: cannot create or write it: {exc.strerror}") from None
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise UserError(
            f"{run_dir}: output_dir: another `distill generate` is writing to it right now"
        ) from None
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        os.close(lock_fd)
        raise UserError(
            f"{run_dir}: output_dir: only {free // 1024} KiB free on its disk; free some space first"
        )
    return lock_fd


def is_being_written(run_dir: Path) -> bool:
    """True while a `distill generate` holds the run directory's lock."""
    try:
        fd = os.open(run_dir / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False
