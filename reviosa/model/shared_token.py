"""Table 4 (i)/(ii): one role-agnostic [SEG] token, by tying ``[SEG_TAR]``'s embedding row to ``[SEG_ACT]``'s."""

from __future__ import annotations

import torch

from reviosa.model.tokenizer import SEG_ACT, SEG_TAR


def _token_rows(model) -> tuple[torch.nn.Parameter, int, int]:
    """(the trainable parameter holding the new tokens' input-embedding rows, row of [SEG_ACT], row of [SEG_TAR])."""
    emb = model.language_model.embed_tokens
    act, tar = model.token_ids[SEG_ACT], model.token_ids[SEG_TAR]
    if hasattr(emb, "token_adapter"):  # only the new rows train: PEFT's delta rows, in token_indices order
        ids = list(emb.token_adapter.token_indices["default"])
        return emb.token_adapter.trainable_tokens_delta["default"], ids.index(act), ids.index(tar)
    return emb.modules_to_save["default"].weight, act, tar  # the whole table trains (lora.train_embed_tokens)


def tie_seg_tokens(model) -> None:
    """Make ``[SEG_TAR]`` the same token as ``[SEG_ACT]`` (one [SEG] used twice, told apart only by position).

    PEFT's trainable rows replace the embedding rows of the new tokens (the head is tied to them); both rows are
    set equal, and a gradient hook gives both the mean of their gradients, so AdamW keeps them equal.
    """
    equalize_seg_rows(model)
    delta, a, t = _token_rows(model)

    def share(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        mean = (grad[a] + grad[t]) / 2
        grad[a] = mean
        grad[t] = mean
        return grad

    delta.register_hook(share)


def equalize_seg_rows(model) -> None:
    """Give ``[SEG_TAR]`` the row of ``[SEG_ACT]`` again, e.g. after loading weights trained with two tokens."""
    delta, a, t = _token_rows(model)
    with torch.no_grad():
        delta[t] = delta[a]


def seg_rows(model) -> tuple[torch.Tensor, torch.Tensor]:
    """The effective input-embedding rows of ``[SEG_ACT]`` and ``[SEG_TAR]`` (to check the tie)."""
    delta, a, t = _token_rows(model)
    return delta[a].detach().clone(), delta[t].detach().clone()
