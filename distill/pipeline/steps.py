"""The stages of `distill run`, each as (name, key, work): what decides its output, and how to make it.

``key(context)`` hashes the stage's own settings with the keys of the stages it reads, so a change upstream
reruns everything downstream; ``work(context)`` returns (outputs: name → path, details: JSON for the report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from distill.endpoint import Endpoint
from distill.errors import UserError
from distill.pipeline.config import LoadedRunConfig
from distill.pipeline.contract_task import TASK_DESCRIPTION
from distill.pipeline.servers import PLACEHOLDER_ENDPOINT
from distill.pipeline.stages import StageRecord, claim_output_dir, stage_key
from distill.review.gate import EXPORT_MODE as REVIEW_EXPORT_MODE
from distill.review.gate import require_review, review_key

if TYPE_CHECKING:
    from distill.engine.config import GenerateConfig
    from distill.pipeline.run import Services

# What the pipeline fills in itself; a `generate:` section may not set these (nor teacher.<these>).
_PIPELINE_GENERATE_KEYS = ("input", "output_dir", "task")
_PIPELINE_TEACHER_KEYS = ("base_url", "model", "api_key_env", "label")


@dataclass
class StageContext:
    loaded: LoadedRunConfig
    run_dir: Path
    services: Services
    records: dict[str, StageRecord] = field(default_factory=dict)

    @property
    def config(self):
        return self.loaded.config

    def key(self, name: str) -> str:
        return self.records[name].key

    def generate_config(self, teacher: Endpoint) -> GenerateConfig:
        from distill.engine.config import GenerateConfig

        section = self.config.generate
        limits = section.get("teacher") or {}
        clash = [(key,) for key in _PIPELINE_GENERATE_KEYS if key in section]
        if isinstance(limits, dict):
            clash += [("teacher", key) for key in _PIPELINE_TEACHER_KEYS if key in limits]
        if clash:
            key = ".".join(clash[0])
            raise UserError(
                f"{self.loaded.source}:{self.loaded.lines.get(('generate', *clash[0]), '?')}: generate.{key}: "
                "set by `distill run` itself (teacher.* chooses the endpoint); remove it from this section"
            )
        endpoint = {"concurrency": 32, **teacher.model_dump(exclude_unset=True)}
        data = {
            "max_tokens": 1024,
            **section,
            "input": str(self.run_dir / "data" / "train.jsonl"),
            "output_dir": str(self.run_dir / "generate"),
            "teacher": {**endpoint, **limits} if isinstance(limits, dict) else limits,
            "task": TASK_DESCRIPTION,
        }
        try:
            return GenerateConfig.model_validate(data)
        except ValidationError as exc:
            raise self.loaded.section_error(exc, "generate") from None

    def validate_sections(self) -> None:
        """Validate the pass-through sections before any stage runs."""
        self.generate_config(PLACEHOLDER_ENDPOINT)
        from distill.pipeline import step_evaluate, step_train

        step_train.validate_section(self)
        step_evaluate.validate_section(self)


# -- data ------------------------------------------------------------------------------------------------


def _data_key(context: StageContext) -> str:
    return stage_key("data", context.config.contracts.model_dump())


def _data(context: StageContext) -> tuple[dict, dict]:
    from distill.pipeline.contracts import make_contract_sets

    contracts = context.config.contracts
    sets = make_contract_sets(
        context.run_dir / "data",
        train_count=contracts.train,
        eval_count=contracts.eval,
        train_seed=contracts.train_seed,
        eval_seed=contracts.eval_seed,
        english_share=contracts.english_share,
    )
    outputs = {"train": sets.train_path, "eval": sets.eval_path, "truth": sets.truth_path}
    return outputs, {"train_inputs": sets.train_count, "eval_contracts": sets.eval_count}


# -- generate --------------------------------------------------------------------------------------------


def _teacher_identity(context: StageContext) -> dict[str, Any]:
    teacher = context.config.teacher
    if teacher.kind == "api" and teacher.endpoint is not None:
        return {"kind": "api", "base_url": teacher.endpoint.base_url, "model": teacher.endpoint.model}
    if teacher.kind == "vllm":
        return {"kind": "vllm", "model": teacher.model}
    return {"kind": "reference"}  # its answers depend only on the data, which is in the key already


def _generate_key(context: StageContext) -> str:
    # generate.teacher holds limits, timeouts and prices: they change how fast, not what the teacher says.
    section = {k: v for k, v in context.config.generate.items() if k != "teacher"}
    return stage_key("generate", context.key("data"), _teacher_identity(context), section, TASK_DESCRIPTION)


def _generate(context: StageContext) -> tuple[dict, dict]:
    from distill.engine.runner import COMPLETE, INTERRUPTED, run_generation

    teacher = context.services.teacher()
    config = context.generate_config(teacher)
    claim_output_dir(config.output_dir, _generate_key(context))
    summary = run_generation(config)
    status = summary.get("status")
    if status == INTERRUPTED:
        raise KeyboardInterrupt
    if status != COMPLETE:
        raise UserError(
            f"generate stopped with status {status!r}: {summary.get('message', '')} "
            f"(see {config.output_dir / 'summary.json'}; `distill run` again resumes it)"
        )
    accepted = summary["records"]["accepted"]
    if accepted == 0:
        raise UserError(
            f"generate: the teacher gave no usable answer (see {config.output_dir / 'summary.json'})"
        )
    details = {
        "teacher": teacher.label or teacher.model,
        "records": summary["records"],
        "rejected_by_reason": summary["rejected_by_reason"],
        "failed_by_class": summary["session"].get("failed_by_class", {}),
        "cost": summary.get("cost"),
    }
    return {"run_dir": config.output_dir, "summary": config.output_dir / "summary.json"}, details


# -- export ----------------------------------------------------------------------------------------------


def _export_key(context: StageContext) -> str:
    # With review: required, what people decided is an input of the dataset like the generated records.
    reviewed = (
        review_key(context.records["generate"].path("run_dir"))
        if context.config.review == "required"
        else None
    )
    return stage_key("export", context.key("generate"), context.config.with_thinking, reviewed)


def _export(context: StageContext) -> tuple[dict, dict]:
    from distill.engine.export import export_dataset

    run_dir = context.records["generate"].path("run_dir")
    if context.config.review == "required":
        require_review(run_dir)  # stops the run here until the review is finished
    result = export_dataset(
        run_dir,
        context.run_dir / "dataset",
        with_thinking=context.config.with_thinking,
        name="contracts",
        review=REVIEW_EXPORT_MODE if context.config.review == "required" else None,
    )
    outputs = {f"{fmt}": path for fmt, path in result["files"].items()}
    outputs["dataset_info"] = result["dataset_info"]
    return outputs, {"rows": result["rows"], "with_thinking": result["with_thinking"]}


def _stages() -> list[tuple[str, Callable[[StageContext], str], Callable[[StageContext], tuple[dict, dict]]]]:
    from distill.pipeline import report, step_evaluate, step_train

    return [
        ("data", _data_key, _data),
        ("generate", _generate_key, _generate),
        ("export", _export_key, _export),
        ("train", step_train.key, step_train.work),
        ("evaluate", step_evaluate.key, step_evaluate.work),
        ("report", report.key, report.work),
    ]


class _LazyStages:
    """The stage list, built on first use so that importing this module stays light."""

    def __iter__(self):
        return iter(_stages())


STAGES = _LazyStages()
