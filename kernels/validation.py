"""Shape, dtype and device checks of the window-attention inputs; the errors name the offending argument."""

from __future__ import annotations

from torch import Tensor


def check_inputs(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, mask: Tensor | None) -> None:
    """Raise ValueError (shapes) or TypeError (dtypes, devices) unless the inputs follow the contract:
    q (B·nW, h, Nq, d); k, v (B·nW, h, Nk, d); bias (h, Nq, Nk); mask (nW, Nq, Nk) with nW dividing B·nW."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (windows, heads, tokens, head_dim), got {tuple(t.shape)}")
    if not q.dtype.is_floating_point:
        raise TypeError(f"q must be a floating-point tensor, got {q.dtype}")
    windows, heads, n_q, head_dim = q.shape
    n_k = k.shape[2]
    if k.shape != (windows, heads, n_k, head_dim):
        raise ValueError(
            f"k must have shape (windows={windows}, heads={heads}, Nk, head_dim={head_dim}) like q, "
            f"got {tuple(k.shape)}"
        )
    if v.shape != k.shape:
        raise ValueError(f"v must have the shape of k {tuple(k.shape)}, got {tuple(v.shape)}")
    _check_like(q, k=k, v=v, bias=bias, mask=mask)
    if bias is not None and bias.shape != (heads, n_q, n_k):
        raise ValueError(f"bias must be (heads, Nq, Nk) = {(heads, n_q, n_k)}, got {tuple(bias.shape)}")
    if mask is not None:
        if mask.dim() != 3 or mask.shape[1:] != (n_q, n_k):
            raise ValueError(f"mask must be (nW, Nq, Nk) = (nW, {n_q}, {n_k}), got {tuple(mask.shape)}")
        if mask.shape[0] == 0 or windows % mask.shape[0] != 0:
            raise ValueError(
                f"mask has {mask.shape[0]} windows, which does not divide the {windows} windows of q "
                "(q holds B·nW windows, image b's window i at row b·nW + i)"
            )


def _check_like(q: Tensor, **others: Tensor | None) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if t.dtype != q.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but q has {q.dtype}; all inputs share the computation dtype "
                f"(pass {name}.to(q.dtype))"
            )
        if t.device != q.device:
            raise TypeError(f"{name} is on {t.device} but q is on {q.device}")
