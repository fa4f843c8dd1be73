"""The teacher's answers to the eval set, asked exactly as during generation (the engine's prompt template).

The teacher replies in the template's CoT format (【思考过程】…【最终答案】…); its final answer is what the
judge and the task metrics see, just as the student's 【答案】 part is.
"""

from __future__ import annotations

from collections.abc import Sequence

from distill.engine.prompts import build_messages, load_template, render_prompt
from distill.engine.types import ChatRequest
from distill.evaluator.config import TeacherConfig
from distill.evaluator.evalset import EvalItem


def teacher_request(
    item: EvalItem,
    teacher: TeacherConfig,
    task: str,
    template: str,
    *,
    max_tokens: int | None = None,
    tag: str = "",
) -> ChatRequest:
    """The generation prompt for one item, as one user message (the seed sends no system prompt)."""
    return ChatRequest(
        messages=build_messages(render_prompt(template, task, item.input)),
        model=teacher.model,
        temperature=teacher.temperature,
        max_tokens=max_tokens or teacher.max_tokens,
        request_id=f"eval-teacher{tag}-{item.id}",
    )


def teacher_requests(items: Sequence[EvalItem], teacher: TeacherConfig, task: str) -> dict[str, ChatRequest]:
    """One request per item, keyed by item id."""
    template = load_template(teacher.template)
    return {item.id: teacher_request(item, teacher, task, template) for item in items}
