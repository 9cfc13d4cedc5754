"""Attention rows of special tokens, recomputed from one layer's input (no eager attention in the model)."""

from __future__ import annotations

import torch


def special_token_attention(language_model, layer: int, hidden: torch.Tensor, position_ids: torch.Tensor,
                            attention_mask: torch.Tensor, batch_idx: torch.Tensor, query_pos: torch.Tensor,
                            heads: list[int]) -> torch.Tensor:
    """Log-probabilities of the softmax attention (n_rows, len(heads), L) of the given query rows at ``layer``.

    ``hidden`` is the layer's input (``hidden_states[layer]``) of shape (B, L, H); rows are ``(batch_idx[i],
    query_pos[i])``. Only the needed query rows, heads and their key/value heads are projected, with the layer's
    own (LoRA-adapted) ``q_proj``/``k_proj`` and rotary embedding, so the result is the attention the model
    computes, with gradient, whatever attention kernel the forward pass used. Masked keys get ``-inf``.
    """
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    block = language_model.layers[layer]
    attn = block.self_attn
    d = attn.head_dim
    n_groups = attn.num_key_value_groups
    heads_t = torch.as_tensor(heads, device=hidden.device)
    kv_heads = sorted(set(h // n_groups for h in heads))
    kv_of = torch.as_tensor([kv_heads.index(h // n_groups) for h in heads], device=hidden.device)

    normed = block.input_layernorm(hidden)
    cos, sin = language_model.rotary_emb(hidden, position_ids)
    samples = torch.unique(batch_idx)
    out = []
    rows_order = []
    for b in samples.tolist():
        sel = (batch_idx == b).nonzero(as_tuple=True)[0]
        pos = query_pos[sel]
        q = attn.q_proj(normed[b, pos]).view(len(pos), -1, d)[:, heads_t]          # (n, h, d)
        k = attn.k_proj(normed[b]).view(hidden.size(1), -1, d)[:, kv_heads]     # (L, kv, d)
        q, _ = apply_rotary_pos_emb(q.transpose(0, 1), q.transpose(0, 1), cos[b, pos], sin[b, pos], unsqueeze_dim=0)
        _, k = apply_rotary_pos_emb(k.transpose(0, 1), k.transpose(0, 1), cos[b], sin[b], unsqueeze_dim=0)
        logits = torch.einsum("hnd,hld->nhl", q.float(), k[kv_of].float()) * attn.scaling
        keys = torch.arange(hidden.size(1), device=hidden.device)
        allowed = (keys[None, :] <= pos[:, None]) & attention_mask[b].bool()[None, :]
        logits = logits.masked_fill(~allowed[:, None, :], float("-inf"))
        # log_softmax, not softmax: a loss on tiny probabilities keeps its gradient (no underflow to 0, no clamp).
        out.append(torch.log_softmax(logits, dim=-1))
        rows_order.append(sel)
    probs = torch.cat(out)
    order = torch.cat(rows_order)
    return probs[torch.argsort(order)]
