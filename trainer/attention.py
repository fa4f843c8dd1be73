"""Attention over packed rows without a mask: each sample attends only to itself, at sum(len²) cost.

transformers 5 can train on packed rows with plain SDPA: when ``attention_mask`` is None and ``position_ids``
restart, ``masking_utils.find_packed_sequence_indices`` builds a block-diagonal 4-D mask. That mask costs
O(T²) memory and keeps SDPA off its fused causal kernel. This implementation instead receives the sequence
bounds (``cu_seq_lens_q``, the FlashAttention convention that ``DataCollatorWithFlattening`` also uses) and
runs causal attention per sample: torch's varlen kernel on CUDA, one fused SDPA call per sample elsewhere.
It is for training forwards only (no KV cache); models are switched back to ``sdpa`` before saving.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # torch >= 2.10: FlashAttention over packed rows in one call (CUDA)
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # older torch: the per-sample loop below, on any device
    varlen_attn = None

NAME = "distill_packed"
_registered = False


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query/key/value: (1, heads, tokens, head_dim); returns (1, tokens, heads, head_dim)."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        raise RuntimeError(f"attention '{NAME}' needs cu_seq_lens_q (packed training batches only)")
    dropout = dropout if module.training else 0.0
    if (
        varlen_attn is not None
        and query.is_cuda
        and query.dtype in (torch.bfloat16, torch.float16)
        and not dropout
    ):
        longest = int(kwargs.get("max_length_q") or (bounds[1:] - bounds[:-1]).max())
        bounds = bounds.to(device=query.device, dtype=torch.int32)  # already there: the loss moves it once
        out = varlen_attn(
            query[0].transpose(0, 1),
            key[0].transpose(0, 1),
            value[0].transpose(0, 1),
            bounds,
            bounds,
            longest,
            longest,
            scale=scaling,
            window_size=(-1, 0),
            enable_gqa=key.shape[1] != query.shape[1],
        )
        return out.unsqueeze(0), None
    pieces = []
    edges = bounds.tolist()
    gqa = key.shape[1] != query.shape[1]
    for start, end in zip(edges[:-1], edges[1:], strict=True):
        pieces.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, start:end],
                value[:, :, start:end],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
        )
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=2)
    return out.transpose(1, 2).contiguous(), None


def _no_mask(*args, **kwargs) -> None:
    return None  # the bounds travel in cu_seq_lens_q; no mask is ever built


def register() -> str:
    """Make ``attn_implementation=NAME`` available to transformers; returns NAME."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, packed_attention)
        AttentionMaskInterface.register(NAME, _no_mask)
        _registered = True
    return NAME
