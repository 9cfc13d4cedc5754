"""Table 4 (i)/(ii): one role-agnostic [SEG] token, by tying ``[SEG_TAR]``'s embedding row to ``[SEG_ACT]``'s."""

from __future__ import annotations

import torch

from reviosa.model.tokenizer import SEG_ACT, SEG_TAR


def _token_rows(model) -> tuple[torch.nn.Parameter, list[int]]:
    """(trainable rows, which replace the embedding rows of these token ids) of the input embedding."""
    emb = model.language_model.embed_tokens.token_adapter
    return emb.trainable_tokens_delta["default"], list(emb.token_indices["default"])


def tie_seg_tokens(model) -> None:
    """Make ``[SEG_TAR]`` the same token as ``[SEG_ACT]`` (one [SEG] used twice, told apart only by position).

    PEFT's trainable rows replace the embedding rows of the new tokens (the head is tied to them); both rows are
    set equal, and a gradient hook gives both the mean of their gradients, so AdamW keeps them equal.
    """
    delta, ids = _token_rows(model)
    a, t = ids.index(model.token_ids[SEG_ACT]), ids.index(model.token_ids[SEG_TAR])
    with torch.no_grad():
        delta[t] = delta[a]

    def share(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        mean = (grad[a] + grad[t]) / 2
        grad[a] = mean
        grad[t] = mean
        return grad

    delta.register_hook(share)


def seg_rows(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The effective input-embedding rows of ``[SEG_ACT]`` and ``[SEG_TAR]`` (to check the tie)."""
    delta, ids = _token_rows(model)
    a, t = ids.index(model.token_ids[SEG_ACT]), ids.index(model.token_ids[SEG_TAR])
    return delta[a].detach().clone(), delta[t].detach().clone()
