"""From answers to grades: the judge requests for every (system, item), and what their replies mean.

A *system* is the teacher or one student. Score mode asks the judge once per answer with the seed's prompt;
pairwise mode asks twice per (student, item) with the teacher's and the student's answers swapped. The
judge sees the final answer (after 【答案】/【最终答案】) unless ``judge.answer_only`` is off.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from distill.engine.parsing import answer_of
from distill.engine.types import CallFailure, ChatRequest
from distill.evaluator.calls import Answer
from distill.evaluator.config import JudgeConfig
from distill.evaluator.evalset import EvalItem
from distill.evaluator.judge import (
    TIE,
    combine_orders,
    pairwise_prompt,
    parse_preference,
    parse_score,
    score_prompt,
)

TEACHER = "teacher"


def graded_text(answer: Answer | None, answer_only: bool) -> str | None:
    if answer is None:
        return None
    return answer_of(answer.text) if answer_only else answer.text


def _request(judge: JudgeConfig, prompt: str, request_id: str) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": prompt}],
        model=judge.model,
        temperature=judge.temperature,
        max_tokens=judge.max_tokens,
        request_id=request_id,
    )


def judge_requests(
    judge: JudgeConfig, items: Sequence[EvalItem], answers: dict[str, list[Answer | None]]
) -> dict[str, ChatRequest]:
    """Requests keyed ``score|system|id`` and ``pair|student|id|tf`` / ``…|sf`` (teacher first / student first)."""
    requests: dict[str, ChatRequest] = {}
    texts = {
        system: [graded_text(a, judge.answer_only) for a in column] for system, column in answers.items()
    }
    if judge.mode in ("score", "both"):
        for system, column in texts.items():
            for item, text in zip(items, column, strict=True):
                if text is not None:
                    prompt = score_prompt(item.instruction, item.reference, text)
                    requests[f"score|{system}|{item.id}"] = _request(
                        judge, prompt, f"eval-judge-{system}-{item.id}"
                    )
    if judge.mode in ("pairwise", "both") and TEACHER in texts:
        for system, column in texts.items():
            if system == TEACHER:
                continue
            for item, teacher_text, text in zip(items, texts[TEACHER], column, strict=True):
                if teacher_text is None or text is None:
                    continue
                base = f"pair|{system}|{item.id}"
                requests[base + "|tf"] = _request(
                    judge,
                    pairwise_prompt(item.instruction, item.reference, teacher_text, text),
                    f"eval-{base}-tf",
                )
                requests[base + "|sf"] = _request(
                    judge,
                    pairwise_prompt(item.instruction, item.reference, text, teacher_text),
                    f"eval-{base}-sf",
                )
    return requests


def read_scores(
    system: str,
    items: Sequence[EvalItem],
    answers: Sequence[Answer | None],
    replies: dict[str, Answer | CallFailure],
) -> tuple[list[float | None], Counter[str]]:
    """Each item's score (None when missing) and why scores are missing, counted."""
    scores: list[float | None] = []
    missing: Counter[str] = Counter()
    for item, answer in zip(items, answers, strict=True):
        reply = replies.get(f"score|{system}|{item.id}")
        if answer is None:
            scores.append(None)
            missing["no_answer"] += 1
        elif isinstance(reply, CallFailure):
            scores.append(None)
            missing[f"judge_call_{reply.error_class}"] += 1
        elif reply is None:
            scores.append(None)
            missing["not_judged"] += 1
        else:
            parsed = parse_score(reply.text)
            scores.append(parsed.value)
            if parsed.value is None:
                missing[f"unparseable_{parsed.problem}"] += 1
    return scores, missing


def read_pairwise(
    student: str, items: Sequence[EvalItem], replies: dict[str, Answer | CallFailure]
) -> dict[str, Any]:
    """Pairwise outcome counts for one student against the teacher (disagreeing orders are ties)."""
    outcomes: Counter[str] = Counter()
    inconsistent = 0
    for item in items:
        base = f"pair|{student}|{item.id}"
        first, second = replies.get(base + "|tf"), replies.get(base + "|sf")
        if not isinstance(first, Answer) or not isinstance(second, Answer):
            outcomes["missing"] += 1
            continue
        combined = combine_orders(parse_preference(first.text), parse_preference(second.text))
        if combined is None:
            outcomes["missing"] += 1
            continue
        winner, disagree = combined
        inconsistent += disagree
        outcomes[winner] += 1
    decided = outcomes["teacher"] + outcomes["student"] + outcomes[TIE]
    return {
        "student_wins": outcomes["student"],
        "teacher_wins": outcomes["teacher"],
        "ties": outcomes[TIE],
        "missing": outcomes["missing"],
        "order_disagreements": inconsistent,
        "student_win_rate": outcomes["student"] / decided if decided else None,
        "teacher_win_rate": outcomes["teacher"] / decided if decided else None,
        "tie_rate": outcomes[TIE] / decided if decided else None,
    }
