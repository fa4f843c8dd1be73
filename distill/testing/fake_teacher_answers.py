"""What the fake teacher says: deterministic chain-of-thought answers, token counts, and deliberate bad answers.

Answers are a pure function of the prompt and the request id (``"{id}#{sample}"``), so two samples of one
input differ, a rerun gives the same text, and a test can predict every byte. They follow the markers the
prompt asks for (the engine's templates: 【思考过程】/【最终答案】 or [Thinking]/[Final Answer]) in the
prompt's language. Some fractions of answers are made bad on purpose so the engine's filters get exercised.

Token rule (prompt and completion alike, documented for the benchmark): every CJK character is one token,
and every other run of up to four characters is one token: ``cjk + ceil(other / 4)``. It is cheap, stable,
and close enough to BPE counts for rate-limit arithmetic.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from typing import Any

_CJK = re.compile(
    r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\u3000-\u303f\uff00-\uffef]"
)

ZH_MARKERS = ("【思考过程】", "【最终答案】")
EN_MARKERS = ("[Thinking]", "[Final Answer]")
ZH_REFUSAL = "很抱歉,我无法回答这个问题。"
EN_REFUSAL = "I'm sorry, I cannot help with that request."

Responder = Callable[[dict[str, Any]], str]

_ZH_STEPS = (
    "先通读输入,找出其中的关键对象和它们之间的关系",
    "对照任务说明,确认需要输出的字段和格式",
    "逐条检查输入中的数字、日期和名称,避免遗漏",
    "考虑可能的歧义,选择最符合上下文的解释",
    "把中间结论整理成清晰的结构,再核对一遍",
    "排除与任务无关的信息,只保留必要的内容",
)
_ZH_ANSWERS = (
    "综合以上分析,结论如下:输入中的要点已逐项整理,关键数据与上下文一致,可以直接使用。",
    "最终结果:根据任务要求完成了处理,各项信息准确对应原文,没有发现矛盾之处。",
    "处理完毕:已按照规定格式给出答案,其中每一项都经过核对,适合作为后续步骤的依据。",
)
_EN_STEPS = (
    "Read the input carefully and list the entities and how they relate",
    "Check the task description to confirm the fields and format required",
    "Verify every number, date and name against the input",
    "Consider ambiguous phrases and pick the reading that fits the context",
    "Organise the intermediate conclusions and check them once more",
    "Drop details that do not matter for this task",
)
_EN_ANSWERS = (
    "Putting it together: the key points of the input are extracted one by one and agree with the context.",
    "Result: the task is done as specified, every item maps back to the source text without contradiction.",
    "Done: the answer follows the required format and each item was checked, so it can be used downstream.",
)


def count_tokens(text: str) -> int:
    """The fake teacher's token count: CJK characters one each, other characters four to a token."""
    cjk = len(_CJK.findall(text))
    return cjk + -(-(len(text) - cjk) // 4)


def is_chinese(text: str) -> bool:
    return len(_CJK.findall(text[:2000])) * 10 >= min(len(text), 2000)


def prompt_text(body: dict[str, Any]) -> str:
    """All message contents of a chat request, joined."""
    parts = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # OpenAI content parts
            parts.extend(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "\n".join(parts)


def _input_snippet(prompt: str, limit: int) -> str:
    """A short piece of the user's input (after the template's input label when present), one line."""
    for label in ("输入内容:", "输入内容:", "Input:"):
        at = prompt.find(label)
        if at >= 0:
            prompt = prompt[at + len(label) :]
            break
    return " ".join(prompt.split())[:limit]


def seeded(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def cot_answer(prompt: str, request_id: str, temperature: float, *, kind: str = "good") -> str:
    """A CoT answer in the prompt's language; ``kind`` is good, bad_format, refusal or short."""
    chinese = ZH_MARKERS[0] in prompt or (EN_MARKERS[0] not in prompt and is_chinese(prompt))
    rng = seeded(prompt, request_id, temperature)
    think_marker, answer_marker = ZH_MARKERS if chinese else EN_MARKERS
    if kind == "refusal":
        return ZH_REFUSAL if chinese else EN_REFUSAL
    steps = rng.sample(_ZH_STEPS if chinese else _EN_STEPS, k=3)
    snippet = _input_snippet(prompt, 24)
    tag = hashlib.blake2b(f"{request_id}|{temperature}".encode(), digest_size=4).hexdigest()
    if chinese:
        thinking = "\n".join(f"{i}. {step}。" for i, step in enumerate(steps, 1)) + f"\n输入要点:{snippet}"
        answer = f"{rng.choice(_ZH_ANSWERS)}(编号 {tag})"
        short = f"结论:{tag}"
    else:
        thinking = "\n".join(f"{i}. {step}." for i, step in enumerate(steps, 1)) + f"\nInput gist: {snippet}"
        answer = f"{rng.choice(_EN_ANSWERS)} (ref {tag})"
        short = f"Done: {tag}"
    if kind == "bad_format":
        return f"{thinking}\n\n{answer}"  # no markers at all
    if kind == "short":
        answer = short
    return f"{think_marker}\n{thinking}\n\n{answer_marker}\n{answer}"


def truncate_to_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of ``text`` whose token count is at most ``max_tokens``."""
    if count_tokens(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def split_stream_pieces(text: str) -> list[str]:
    """The text cut into roughly one-token pieces, as a streaming server would send them."""
    pieces: list[str] = []
    buffer = ""
    for char in text:
        if _CJK.match(char):
            if buffer:
                pieces.append(buffer)
                buffer = ""
            pieces.append(char)
        else:
            buffer += char
            if len(buffer) == 4:
                pieces.append(buffer)
                buffer = ""
    if buffer:
        pieces.append(buffer)
    return pieces


def completion_body(
    completion_id: str, created: int, model: str, text: str, finish_reason: str, usage: dict[str, int]
) -> dict[str, Any]:
    """A non-streamed ``chat.completion`` object, as the API and the batch output file carry it."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }
