"""Split a chain-of-thought answer into its thinking and its final answer.

Two formats:
- the teacher's, asked for by the prompt templates: 【思考过程】…【最终答案】… (or [Thinking]…[Final Answer]…);
- the dataset's `full_output`, as in the seed: ``【思考】{thinking}\\n\\n【答案】{output}`` — what a student trained
  "with thinking" writes, so the evaluator splits student output with `split_full_output`.
"""

from __future__ import annotations

import re

FULL_THINKING = "【思考】"
FULL_ANSWER = "【答案】"

# The teacher templates' markers (Chinese, then English, matched leniently because English-speaking teachers
# vary case and spacing), then the dataset's own short markers.
_COT_PATTERNS = (
    (re.compile(re.escape("【思考过程】")), re.compile(re.escape("【最终答案】"))),
    (
        re.compile(r"\[\s*thinking\s*\]", re.IGNORECASE),
        re.compile(r"\[\s*final\s+answer\s*\]", re.IGNORECASE),
    ),
    (re.compile(re.escape(FULL_THINKING)), re.compile(re.escape(FULL_ANSWER))),
)
# What may precede a marker on its line and still leave it "at the start of a line": markdown decoration.
_LINE_LEAD = " \t*#>_"


def _starts_line(text: str, at: int) -> bool:
    before = text.rfind("\n", 0, at)
    return not text[before + 1 : at].strip(_LINE_LEAD)


def _own_answer_marker(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    """The teacher's own answer marker: the last one that starts a line, else the last one at all.

    A teacher often quotes its input, and an input may hold any marker; the teacher's own marker comes
    after everything it quoted in its reasoning, on a line of its own.
    """
    last = last_at_line_start = None
    for match in pattern.finditer(text):
        last = match
        if _starts_line(text, match.start()):
            last_at_line_start = match
    return last_at_line_start or last


def parse_cot(text: str) -> tuple[str, str] | None:
    """(thinking, answer), both stripped, or None when the text lacks a start or an answer marker.

    The answer starts after the teacher's own answer marker (`_own_answer_marker`; of all marker styles,
    the one found last wins), the thinking runs from the first start marker before it. Text before the start
    marker (a preamble) is dropped, as in the seed.
    """
    # Fast path, the default template's usual answer: one start marker, one answer marker on its own line, and
    # no marker of another style after it. Found with str methods, no regex.
    answer_at = text.rfind("【最终答案】")
    if answer_at != -1 and text.find("【最终答案】") == answer_at and _starts_line(text, answer_at):
        start = text.find("【思考过程】", 0, answer_at)
        tail = answer_at + 6
        if start != -1 and "[" not in text[tail:] and FULL_ANSWER not in text[tail:]:
            return text[start + 6 : answer_at].rstrip().rstrip("*").strip(), text[tail:].lstrip("*").strip()
    best: tuple[int, int, int] | None = None  # (answer marker start, its end, thinking start)
    for start_pattern, answer_pattern in _COT_PATTERNS:
        if best is not None and answer_pattern.search(text, best[1]) is None:
            continue  # this style has no marker after the best one found so far
        answer = _own_answer_marker(answer_pattern, text)
        if answer is None or (best is not None and answer.start() <= best[0]):
            continue
        start = start_pattern.search(text, 0, answer.start())
        if start is not None:
            best = (answer.start(), answer.end(), start.end())
    if best is None:
        return None
    answer_at, answer_end, thinking_at = best
    # A bold marker (**【最终答案】**) leaves its asterisks on either side.
    return text[thinking_at:answer_at].rstrip().rstrip("*").strip(), text[answer_end:].lstrip("*").strip()


def format_full_output(thinking: str, answer: str) -> str:
    """The seed's merged training target: ``【思考】{thinking}\\n\\n【答案】{answer}``."""
    return f"{FULL_THINKING}{thinking}\n\n{FULL_ANSWER}{answer}"


def split_full_output(full: str) -> tuple[str, str] | None:
    """Inverse of `format_full_output`: (thinking, answer) or None without a 【答案】 marker.

    A missing 【思考】 part is allowed (thinking is then ""), since a student may skip straight to the answer.
    """
    answer = _own_answer_marker(_COT_PATTERNS[2][1], full)
    if answer is None:
        return None
    answer_at = answer.start()
    head = full[:answer_at]
    thinking_at = head.find(FULL_THINKING)
    thinking = head[thinking_at + len(FULL_THINKING) :] if thinking_at != -1 else ""
    return thinking.strip(), full[answer_at + len(FULL_ANSWER) :].strip()


def answer_of(text: str) -> str:
    """The final answer in a student's or teacher's reply: after the answer marker if any, else all of it."""
    parsed = parse_cot(text) or split_full_output(text)
    return parsed[1] if parsed is not None else text.strip()
