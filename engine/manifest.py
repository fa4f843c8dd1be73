"""`run.json`: what a run directory was generated with, so a resume with other settings is caught.

The fingerprint holds every setting that changes the answers (prompt template text, task, model, endpoint
host, sampling settings, which input fields are read); resuming with any of them changed would mix two
datasets in one directory, so it is refused unless forced. Concurrency, rate limits, prices and filters
change nothing the teacher says and may differ between resumes, and so may the port of a server on this
machine (127.0.0.1), which gets a new free one at each start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from distill.engine.config import GenerateConfig
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill import __version__
from distill.config_files import describe_validation_error
from distill.endpoint import endpoint_identity
from distill.errors import UserError
from distill.files import write_atomically

MANIFEST_NAME = "run.json"
FORMAT_VERSION = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fingerprint_of(config: GenerateConfig, template_text: str) -> dict[str, Any]:
    return {
        "template": template_text,
        "task": config.task,
        "model": config.teacher.model,
        "base_url_host": endpoint_identity(config.teacher.base_url),
        "temperature_first": config.temperature_first,
        "temperature_rest": config.temperature_rest,
        "max_tokens": config.max_tokens,
        "samples_per_input": config.samples_per_input,
        "send_seed": config.send_seed,
        "id_field": config.id_field,
        "input_field": config.input_field,
    }


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One human line per changed field; long texts (template, task) are not printed in full."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, str) and isinstance(after, str) and max(len(before), len(after)) > 60:
            changes.append(f"{key}: text changed")
        else:
            changes.append(f"{key}: {before!r} -> {after!r}")
    return changes


class InputRecord(BaseModel):
    """What run.json remembers of the validated input, so an unchanged file is not validated again."""

    path: str
    size: int
    mtime_ns: int
    rows: int = Field(ge=1)
    derived_ids: bool
    id_field: str | None
    input_field: str


class _ManifestShape(BaseModel):
    """The parts of run.json a start relies on; checked on read so a damaged file is named, not a traceback."""

    model_config = ConfigDict(extra="allow")

    format: int
    fingerprint: dict[str, Any]
    starts: list[Any]
    input: InputRecord | None = None


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / MANIFEST_NAME
    what_to_do = "restore it from a backup, or give a new output directory"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not distill's run manifest; {what_to_do}") from None
    except orjson.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); {what_to_do}") from None
    try:
        _ManifestShape.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc, str(path))
        raise UserError(
            f"{problems}\n{path}: not a run manifest distill wrote, or a damaged one; {what_to_do}"
        ) from None
    return data


def write_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic replace: a kill while writing leaves the old manifest, never half of one."""
    write_atomically(run_dir / MANIFEST_NAME, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))


def open_manifest(
    run_dir: Path, fingerprint: dict[str, Any], *, force: bool, has_records: bool
) -> tuple[dict[str, Any], list[str]]:
    """The manifest to run under, and the fingerprint fields that changed (non-empty only when forced)."""
    manifest = read_manifest(run_dir)
    now = utc_now()
    if manifest is None:
        if has_records and not force:
            raise UserError(
                f"{run_dir} holds shards but no {MANIFEST_NAME}, so nothing says how they were made: "
                "use a new --output-dir, or --force to adopt them under the current settings"
            )
        manifest = {
            "format": FORMAT_VERSION,
            "distill_version": __version__,
            "created_at": now,
            "fingerprint": fingerprint,
            "starts": [],
        }
    changes = describe_changes(manifest.get("fingerprint", {}), fingerprint)
    if changes and not force:
        listed = "\n  ".join(changes)
        raise UserError(
            f"{run_dir / MANIFEST_NAME}: this run was started with other settings that change the answers:\n"
            f"  {listed}\n"
            "resuming would mix two datasets in one directory: restore those settings, use a new --output-dir, "
            "or pass --force to continue with the new settings (records already written keep the old ones)"
        )
    if changes:
        manifest.setdefault("forced_changes", []).append(
            {"at": now, "changes": changes, "previous": manifest.get("fingerprint")}
        )
        manifest["fingerprint"] = fingerprint
    manifest["starts"].append({"at": now, "distill_version": __version__, "forced": bool(force)})
    manifest["distill_version"] = __version__
    return manifest, changes
