"""What the teacher is asked, and what the student will later be asked.

Two different strings per input:
- the *teacher prompt*: a template (the seed's Chinese one by default) that asks for 【思考过程】/【最终答案】;
- the *instruction*: `build_instruction(task, input)`, the plain prompt the student is trained on and later
  evaluated with. The trainer and the evaluator call it, so its output format is a stable contract.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

from distill.errors import UserError

BUILTIN_TEMPLATES = ("zh", "en")
_PLACEHOLDER = re.compile(r"\{(task|input)\}")


def load_template(spec: str) -> str:
    """The template text for "zh", "en" or a path to a UTF-8 file with {task} and {input} placeholders."""
    if spec in BUILTIN_TEMPLATES:
        return resources.files("distill.engine.templates").joinpath(f"{spec}.txt").read_text(encoding="utf-8")
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"template: {spec!r} is neither a built-in template ({', '.join(BUILTIN_TEMPLATES)}) "
            "nor an existing file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: template: cannot read it as UTF-8 text: {exc}") from None
    if "{input}" not in text:
        raise UserError(
            f"{path}: template: has no {{input}} placeholder, so the teacher would never see the input"
        )
    return text


def render_prompt(template: str, task: str, input_text: str) -> str:
    """Fill {task} and {input} in one pass, so braces inside the input (JSON, code) stay untouched."""
    values = {"task": task, "input": input_text}
    parts = list(_template_parts(template))
    for index in range(1, len(parts), 2):  # odd places hold the placeholders' names
        parts[index] = values[parts[index]]
    return "".join(parts)


@functools.lru_cache(maxsize=16)
def _template_parts(template: str) -> tuple[str, ...]:
    """The template split at its placeholders, once per template (this runs for every request): text,
    name, text, name, …, text."""
    return tuple(_PLACEHOLDER.split(template))


def build_instruction(task: str, input_text: str) -> str:
    """The student's prompt for one input: the task description, a blank line, then the input.

    Stable contract (trainer, evaluator and exported datasets depend on it): with an empty task it is the
    input alone; otherwise ``f"{task.strip()}\\n\\n{input_text}"``.
    """
    task = task.strip()
    return f"{task}\n\n{input_text}" if task else input_text


def build_messages(prompt: str) -> list[dict[str, str]]:
    """The seed sends the whole template as one user message, with no system prompt."""
    return [{"role": "user", "content": prompt}]


def estimate_prompt_tokens(prompt: str) -> int:
    """An upper-leaning token estimate used only to reserve rate-limit budget before sending.

    UTF-8 bytes / 3 gives ~1 token per CJK character and ~1.3 per 4 ASCII characters: a slight
    over-estimate for both, which the admission control corrects from the response's usage.
    """
    return len(prompt.encode("utf-8")) // 3 + 8
