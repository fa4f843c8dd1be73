"""`distill generate --dry-run`: everything a run would check and send, and what it would cost — sending nothing.

It reads and validates what a real start does before its first request (template, API key, config, every
input line, the output directory and, for a run directory that exists, its run.json and ledger, read only),
then reports the requests still to send, a few of them in full, the estimated prompt and completion tokens and
the cost range online and in batch mode. Nothing is written and no connection is opened.

Token estimates: prompt tokens are counted as a real start reserves them (UTF-8 bytes / 3, an upper-leaning
estimate), with ~60% of that as the low end (ASCII-heavy text runs ~4 characters a token); completion tokens
range from 0 to ``max_tokens`` per request, and when earlier runs of the directory have answers, their mean is
given as the expected figure.
"""

from __future__ import annotations

from typing import Any

from distill.engine.config import GenerateConfig
from distill.engine.inputs import iter_inputs, validate_inputs
from distill.engine.ledger import Ledger
from distill.engine.manifest import MANIFEST_NAME, describe_changes, fingerprint_of, read_manifest
from distill.engine.prompts import build_messages, estimate_prompt_tokens, load_template, render_prompt
from distill.engine.records import record_key
from distill.engine.rundir import check_run_dir

from distill.endpoint import resolve_api_key

SHOWN_REQUESTS = 3
LOW_PROMPT_SHARE = 0.6


def dry_run(config: GenerateConfig) -> dict[str, Any]:
    """What `distill generate` would send for ``config``, and its estimated tokens and cost; sends nothing."""
    template = load_template(config.template)
    resolve_api_key(config.teacher)
    check_run_dir(config.output_dir)
    info = validate_inputs(config.input, config.id_field, config.input_field)
    done: set[int] = set()
    seen_completion = seen_answers = 0
    notes: list[str] = []
    manifest = read_manifest(config.output_dir) if config.output_dir.is_dir() else None
    if manifest is not None:
        changes = describe_changes(manifest.get("fingerprint", {}), fingerprint_of(config, template))
        if changes:
            notes.append(
                f"{config.output_dir / MANIFEST_NAME}: a real start would refuse (or need --force): "
                + "; ".join(changes)
            )
        ledger = Ledger.read_only(config.output_dir)
        done = ledger.done
        seen_answers = ledger.answers
        seen_completion = ledger.completion_tokens
    samples = range(config.samples_per_input)
    requests = prompt_high = 0
    shown: list[dict[str, Any]] = []
    for row in iter_inputs(config.input, config.id_field, config.input_field, derive_ids=info.derived_ids):
        todo = [sample for sample in samples if record_key(row.id, sample) not in done]
        if not todo:
            continue
        prompt = render_prompt(template, config.task, row.text)
        requests += len(todo)
        prompt_high += (estimate_prompt_tokens(prompt)) * len(todo)
        for sample in todo:
            if len(shown) < SHOWN_REQUESTS:
                shown.append(
                    {
                        "request_id": f"{row.id}#{sample}",
                        "model": config.teacher.model,
                        "messages": build_messages(prompt),
                        "temperature": config.temperature_first if sample == 0 else config.temperature_rest,
                        "max_tokens": config.max_tokens,
                    }
                )
    prompt_low = int(prompt_high * LOW_PROMPT_SHARE)
    completion_max = requests * config.max_tokens
    expected = round(seen_completion / seen_answers) if seen_answers else None
    result: dict[str, Any] = {
        "dry_run": True,
        "sent": 0,
        "endpoint": f"{config.teacher.base_url} (model {config.teacher.model})",
        "input_rows": info.rows,
        "requests": {
            "total": info.rows * config.samples_per_input,
            "already_done": len(done),
            "to_send": requests,
        },
        "first_requests": shown,
        "tokens": {
            "prompt": {"low": prompt_low, "high": prompt_high},
            "completion": {
                "low": 0,
                "high": completion_max,
                "expected_per_answer_from_earlier_runs": expected,
            },
        },
        "cost": _cost(config, prompt_low, prompt_high, completion_max, expected, requests),
        "notes": notes,
    }
    return result


def _cost(
    config: GenerateConfig,
    prompt_low: int,
    prompt_high: int,
    completion_max: int,
    expected: int | None,
    requests: int,
) -> dict[str, Any] | None:
    price = config.teacher.price
    if price is None:
        return None

    def money(prompt: int, completion: int, factor: float = 1.0) -> float:
        return round(
            factor * (prompt * price.input_per_million + completion * price.output_per_million) / 1e6, 6
        )

    factor = config.batch.price_factor
    online = {"low": money(prompt_low, 0), "high": money(prompt_high, completion_max)}
    if expected is not None:
        online["expected"] = money(prompt_high, expected * requests)
    return {
        "currency": price.currency,
        "online": online,
        "batch": {key: round(value * factor, 6) for key, value in online.items()},
        "batch_price_factor": factor,
    }
