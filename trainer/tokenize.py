"""Render examples through the student's own chat template; the loss covers only the assistant's answer.

The prompt is tokenised on its own and the answer after it, exactly as at inference time (the evaluator
tokenises `build_prompt(...)` and the model generates from there), so training and serving see the same
token boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from distill.trainer.data import Example

from distill.errors import UserError


@dataclass(slots=True)
class Sample:
    input_ids: np.ndarray  # int64, prompt then completion
    prompt_len: int  # tokens before the first trained one

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def label_count(self) -> int:
        """Tokens the loss covers: every completion token (each predicted from the one before)."""
        return len(self.input_ids) - self.prompt_len


@dataclass(slots=True)
class TokenizedSet:
    samples: list[Sample]
    example_indices: list[int]  # which Example each sample came from
    truncated: int = 0
    dropped: int = 0
    dropped_where: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(sample.length for sample in self.samples)


def build_prompt(tokenizer, instruction: str) -> str:
    """The exact student prompt: the user turn through the chat template, with the generation prompt."""
    messages = [{"role": "user", "content": instruction}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def completion_text(tokenizer, instruction: str, target: str, prompt: str | None = None) -> str:
    """What follows the prompt in the rendered conversation, cut after the end-of-turn token."""
    prompt = build_prompt(tokenizer, instruction) if prompt is None else prompt
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": target}]
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise UserError(
            "the student's chat template does not render the prompt as a prefix of the conversation; "
            "the trainer cannot separate prompt from answer with this template"
        )
    completion = full[len(prompt) :]
    eos = tokenizer.eos_token
    if eos and eos in completion:
        # The model must learn to stop: keep the end-of-turn token, drop the template's trailing newline.
        completion = completion[: completion.rindex(eos) + len(eos)]
    elif eos:
        completion += eos
    return completion


def tokenize_examples(
    tokenizer, examples: Sequence[Example], max_length: int, overlong: str, *, batch: int = 512
) -> TokenizedSet:
    """Tokenise examples that have a target; over-long ones are truncated (answer cut) or dropped."""
    result = TokenizedSet(samples=[], example_indices=[])
    chosen = [index for index, ex in enumerate(examples) if ex.target is not None]
    for start in range(0, len(chosen), batch):
        indices = chosen[start : start + batch]
        prompts = [build_prompt(tokenizer, examples[i].instruction) for i in indices]
        completions = [
            completion_text(tokenizer, examples[i].instruction, examples[i].target, prompt)
            for i, prompt in zip(indices, prompts, strict=True)
        ]
        prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
        for index, head, tail in zip(indices, prompt_ids, completion_ids, strict=True):
            if len(head) + len(tail) > max_length:
                room = max_length - len(head)
                if overlong == "drop" or room < 1:
                    result.dropped += 1
                    result.dropped_where.append(examples[index].where)
                    continue
                tail = tail[:room]
                result.truncated += 1
            ids = np.asarray(head + tail, dtype=np.int64)
            result.samples.append(Sample(ids, len(head)))
            result.example_indices.append(index)
    return result
