"""The train stage: LoRA SFT of the student on the exported dataset, by the trainer, in a child process.

A child process, because training holds gigabytes that the evaluation's vLLM needs next, and because
Ctrl-C must stop torch's worker threads cleanly. The trainer's config is written to ``configs/train.yaml``
in the run directory (so the stage can be rerun by hand), from the pipeline's choices plus the run config's
``train:`` section.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from distill.errors import UserError
from pipeline.stages import stage_key

if TYPE_CHECKING:
    from pipeline.steps import StageContext

# Keys the pipeline decides; a `train:` section that sets them is an error, not a silent override.
_OWNED = ("data", "output_dir", "model")


def _train_config_data(context: StageContext) -> dict[str, Any]:
    section = context.config.train
    clash = [name for name in _OWNED if name in section]
    if clash:
        line = context.loaded.lines.get(("train", clash[0]), "?")
        raise UserError(
            f"{context.loaded.source}:{line}: train.{clash[0]}: set by `distill run` itself; remove it from this section"
        )
    return {
        **section,
        "data": str(context.run_dir / "dataset" / "contracts_alpaca.jsonl"),
        "output_dir": str(context.run_dir / "train"),
        "model": context.config.student,
    }


def train_config(context: StageContext):
    from trainer.config import TrainConfig

    try:
        return TrainConfig.model_validate(_train_config_data(context))
    except ValidationError as exc:
        raise context.loaded.section_error(exc, "train") from None


def validate_section(context: StageContext) -> None:
    train_config(context)


def key(context: StageContext) -> str:
    return stage_key("train", context.key("export"), context.config.student, context.config.train)


def work(context: StageContext) -> tuple[dict, dict]:
    raise NotImplementedError("waiting for the trainer (issue 3)")


def summary_for_report(context: StageContext) -> dict[str, Any]:
    return {}
