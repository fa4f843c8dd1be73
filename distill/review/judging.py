"""Judge first, people second: a judge endpoint scores every accepted record 0–10 before anyone reads it.

The calls go through the evaluator's cached call layer (the engine's client, admission control, retries), so
a rerun pays only for records not scored yet. The prompt is the seed's grading prompt without a reference
answer (a run has none): the question as the student will see it, the answer, and "only a score 0 to 10".
Replies are read with the evaluator's `parse_score`, which never invents a score.

With a threshold, records below it are rejected as ``low_score`` by entries in the decision log, marked
``by: judge``; a person's decision always wins over the judge's, and the report counts how often people
overruled it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from distill.engine.records import iter_records
from distill.engine.types import ChatRequest
from distill.evaluator.calls import CallCache, run_calls_sync
from distill.evaluator.judge import parse_score

from distill.review import scores as score_file
from distill.review.config import ReviewJudgeConfig
from distill.review.decisions import (
    CLEAR,
    JUDGE,
    LOW_SCORE,
    PERSON,
    REJECT,
    REVIEW_DIR,
    ReviewState,
    make_entry,
)
from distill.review.scores import Score

JUDGE_TEMPLATE = "问题:{question}\n待评估答案:{answer}\n只输出0到10的分数:"
CACHE_NAME = "judge-cache.jsonl"


def _request_key(row_id: str, sample_index: int) -> str:
    return orjson.dumps([row_id, sample_index]).decode()


def score_run(run_dir, judge: ReviewJudgeConfig, *, say: Callable[[str], None]) -> dict[str, Any]:
    """Score every accepted record (cached); write scores.jsonl; return counts."""
    requests: dict[str, ChatRequest] = {}
    for record in iter_records(run_dir, ("accepted",)):
        row_id, sample_index = record.id, record.sample_index
        prompt = JUDGE_TEMPLATE.format(question=record.instruction, answer=record.output)
        requests[_request_key(row_id, sample_index)] = ChatRequest(
            messages=[{"role": "user", "content": prompt}],
            model=judge.model,
            temperature=judge.temperature,
            max_tokens=judge.max_tokens,
            request_id=f"review-judge-{row_id}-{sample_index}",
        )
    warnings: list[str] = []
    with CallCache(run_dir / REVIEW_DIR / CACHE_NAME) as cache:
        results, stats = run_calls_sync(judge, "judge", requests, cache, warnings=warnings)
    for warning in warnings:
        say(f"warning: {warning}")
    scores: dict[tuple[str, int], Score] = {}
    for key in requests:
        row_id, sample_index = orjson.loads(key)
        result = results.get(key)
        text = getattr(result, "text", None)
        if text is None:
            scores[(row_id, sample_index)] = Score(None, getattr(result, "error_class", "no reply"))
            continue
        parsed = parse_score(text)
        scores[(row_id, sample_index)] = Score(parsed.value, parsed.problem)
    score_file.write(run_dir, scores, judge.model)
    counts = stats.as_dict()
    counts["scored"] = sum(1 for s in scores.values() if s.score is not None)
    counts["unscored"] = len(scores) - counts["scored"]
    say(
        f"judge: {counts['scored']} of {len(scores)} records scored ({counts['cached']} from the cache, "
        f"{counts['sent']} sent)"
    )
    return counts


def threshold_entries(
    state: ReviewState, scores: dict[tuple[str, int], Score], threshold: float | None, judge_name: str
) -> list[dict[str, Any]]:
    """Log entries that bring the judge's low_score rejections in line with the scores and the threshold.

    A record a person decided is left alone. A judge rejection whose score is no longer below the threshold
    (the threshold was lowered, or removed) is cleared.
    """
    entries = []
    for (row_id, sample_index), score in scores.items():
        latest = state.latest.get((row_id, sample_index))
        if latest is not None and latest.by == PERSON:
            continue
        below = threshold is not None and score.score is not None and score.score < threshold
        if below and latest is None:
            entries.append(
                make_entry(
                    row_id,
                    sample_index,
                    REJECT,
                    reviewer=judge_name,
                    by=JUDGE,
                    reason=LOW_SCORE,
                    extra={"score": score.score, "threshold": threshold},
                )
            )
        elif not below and latest is not None and latest.by == JUDGE:
            entries.append(
                make_entry(
                    row_id,
                    sample_index,
                    CLEAR,
                    reviewer=judge_name,
                    by=JUDGE,
                    extra={"score": score.score, "threshold": threshold},
                )
            )
    return entries
