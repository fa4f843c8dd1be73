"""Which samples go into which micro-batch, and how a micro-batch becomes tensors.

The optimizer step keeps the seed's meaning: ``per_device_batch_size × gradient_accumulation_steps`` samples
per process. Packing only changes how those samples are run: instead of padded groups of
``per_device_batch_size``, they are packed first-fit-decreasing into rows of at most ``token_budget`` tokens
(the multipack idea of openchat/axolotl), concatenated with ``position_ids`` restarting at each sample.

Every process must run the same number of forward/backward passes per step (ZeRO reduces gradients on each
backward), so the plan gives every (step, rank) the same number of micro-batches: bins are split until they
match, and a rank with too few samples gets an empty micro-batch (a one-token forward with zero loss weight).
The plan is a pure function of the lengths and the seed, so every rank builds the same one and a resumed
run skips exactly the steps it has done.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from distill.trainer.tokenize import Sample


@dataclass(slots=True)
class Plan:
    # steps[s][rank] = list of micro-batches, each a list of sample indices ([] = empty micro-batch)
    steps: list[list[list[list[int]]]]
    micro_batches: int  # per rank per step, the same everywhere
    label_tokens: list[int]  # per step, summed over all ranks: the loss's denominator
    real_tokens: list[int]  # per step, summed over all ranks: what tokens/s counts
    steps_per_epoch: int
    dropped_tail: int  # samples left over at an epoch's end, fewer than the number of processes

    @property
    def digest(self) -> str:
        """Identifies the plan: a checkpoint resumes only into the very same sequence of steps."""
        return hashlib.sha256(json.dumps([self.steps, self.label_tokens]).encode()).hexdigest()[:16]


def _ffd(indices: list[int], lengths: Sequence[int], budget: int) -> list[list[int]]:
    bins: list[list[int]] = []
    room: list[int] = []
    for index in sorted(indices, key=lambda i: -lengths[i]):
        for slot, free in enumerate(room):
            if lengths[index] <= free:
                bins[slot].append(index)
                room[slot] -= lengths[index]
                break
        else:
            bins.append([index])
            room.append(budget - lengths[index])
    return bins


def _split_to(bins: list[list[int]], count: int, lengths: Sequence[int]) -> list[list[int]]:
    """Split the heaviest splittable bins until there are ``count``; pad with empty ones if none is left."""
    bins = [list(b) for b in bins]
    while len(bins) < count:
        splittable = [b for b in bins if len(b) > 1]
        if not splittable:
            bins += [[] for _ in range(count - len(bins))]
            break
        heaviest = max(splittable, key=lambda b: sum(lengths[i] for i in b))
        bins.remove(heaviest)
        ordered = sorted(heaviest, key=lambda i: -lengths[i])
        left, right, left_tokens, right_tokens = [], [], 0, 0
        for index in ordered:  # greedy halves balanced by tokens
            if left_tokens <= right_tokens:
                left.append(index)
                left_tokens += lengths[index]
            else:
                right.append(index)
                right_tokens += lengths[index]
        bins += [left, right]
    return bins


def _rank_bins(
    indices: list[int], lengths: Sequence[int], packing: bool, budget: int, batch: int
) -> list[list[int]]:
    if packing:
        return _ffd(indices, lengths, budget)
    return [indices[i : i + batch] for i in range(0, len(indices), batch)]


def build_plan(
    samples: Sequence[Sample],
    *,
    epochs: float,
    per_device_batch: int,
    grad_accum: int,
    world: int,
    packing: bool,
    token_budget: int,
    seed: int,
) -> Plan:
    lengths = [sample.length for sample in samples]
    per_step = per_device_batch * grad_accum * world
    usable = len(samples) - len(samples) % world
    steps_per_epoch = max(1, math.ceil(usable / per_step)) if usable else 0
    total_steps = math.ceil(epochs * steps_per_epoch)
    steps: list[list[list[list[int]]]] = []
    epoch = 0
    while len(steps) < total_steps:
        order = list(range(len(samples)))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        order = order[:usable]
        for start in range(0, usable, per_step):
            chunk = order[start : start + per_step]
            ranks = [chunk[rank::world] for rank in range(world)]
            steps.append([_rank_bins(r, lengths, packing, token_budget, per_device_batch) for r in ranks])
            if len(steps) == total_steps:
                break
        epoch += 1
    micro = max((len(bins) for step in steps for bins in step), default=1)
    steps = [[_split_to(bins, micro, lengths) for bins in step] for step in steps]
    label_tokens = [sum(samples[i].label_count for bins in step for b in bins for i in b) for step in steps]
    real_tokens = [sum(lengths[i] for bins in step for b in bins for i in b) for step in steps]
    return Plan(steps, micro, label_tokens, real_tokens, steps_per_epoch, len(samples) - usable)


@dataclass(slots=True)
class MicroBatch:
    inputs: dict[str, torch.Tensor | int]  # keyword arguments of the model's forward
    keep: torch.Tensor  # flat positions whose logits the loss needs
    targets: torch.Tensor  # the token each kept position must predict
    real_tokens: int  # non-pad tokens in the micro-batch
    label_tokens: int


def _label_positions(samples: Sequence[Sample], offsets: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    keep, targets = [], []
    for sample, offset in zip(samples, offsets, strict=True):
        ids = torch.from_numpy(sample.input_ids)
        start, end = offset + sample.prompt_len - 1, offset + sample.length - 1
        keep.append(torch.arange(start, end))
        targets.append(ids[sample.prompt_len :])
    return torch.cat(keep), torch.cat(targets)


def collate_packed(samples: Sequence[Sample]) -> MicroBatch:
    """One row: the samples back to back, positions restarting at 0, sequence bounds for the attention."""
    if not samples:  # an empty micro-batch keeps every rank's collective calls in step
        ids = torch.zeros(1, 1, dtype=torch.long)
        bounds = torch.tensor([0, 1], dtype=torch.int32)
        inputs = {
            "input_ids": ids,
            "position_ids": torch.zeros_like(ids),
            "cu_seq_lens_q": bounds,
            "cu_seq_lens_k": bounds,
            "max_length_q": 1,
            "max_length_k": 1,
        }
        return MicroBatch(inputs, torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), 0, 0)
    lengths = [sample.length for sample in samples]
    offsets = [0]
    for length in lengths[:-1]:
        offsets.append(offsets[-1] + length)
    ids = torch.from_numpy(np.concatenate([s.input_ids for s in samples])).unsqueeze(0)
    positions = torch.cat([torch.arange(length) for length in lengths]).unsqueeze(0)
    bounds = torch.tensor([*offsets, offsets[-1] + lengths[-1]], dtype=torch.int32)
    keep, targets = _label_positions(samples, offsets)
    inputs = {
        "input_ids": ids,
        "position_ids": positions,
        "cu_seq_lens_q": bounds,
        "cu_seq_lens_k": bounds,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    return MicroBatch(inputs, keep, targets, sum(lengths), len(targets))


def collate_padded(samples: Sequence[Sample], pad_id: int) -> MicroBatch:
    """Right-padded rows with an attention mask (packing off); kept positions index the flattened rows."""
    if not samples:
        return collate_packed(samples)
    width = max(sample.length for sample in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, sample in enumerate(samples):
        ids[row, : sample.length] = torch.from_numpy(sample.input_ids)
        mask[row, : sample.length] = 1
    keep, targets = _label_positions(samples, [row * width for row in range(len(samples))])
    inputs = {"input_ids": ids, "attention_mask": mask}
    return MicroBatch(inputs, keep, targets, sum(s.length for s in samples), len(targets))
