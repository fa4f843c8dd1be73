"""The bundled configs, shipped inside the wheel as ``distill.configs`` (read with importlib.resources)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def bundled(name: str) -> Path | None:
    """The bundled config called ``name`` (``demo-tiny``, ``demo-tiny.yaml`` or ``configs/demo-tiny.yaml``)."""
    relative = name.removeprefix("configs/")
    for candidate in (relative, f"{relative}.yaml"):
        resource = resources.files(__name__).joinpath(candidate)
        if resource.is_file():
            return Path(str(resource))
    return None


def local_or_bundled(value: str) -> Path:
    """A file the user names: the file if it exists, else the bundled config of that name, else the path as
    given (so that reading it reports a missing file by the name the user wrote)."""
    path = Path(value)
    if path.exists():
        return path
    return bundled(value) or path
