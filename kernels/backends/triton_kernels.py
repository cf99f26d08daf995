"""The fused window-attention forward and backward Triton kernels.

Triton decides when it is imported whether kernels are compiled or run in its interpreter (TRITON_INTERPRET=1,
CPU tensors allowed), so that variable must be set before the first `import triton`. One forward program per
(query block, window, head) and one backward program per (window, head). Head dims are zero-padded to BLOCK_D
inside the kernel and keys past Nk are excluded with −inf, while zero keys passed by the caller stay ordinary
keys. Softmax statistics and all accumulators are fp32; probabilities and score gradients enter the matmuls in
the input dtype, as in FlashAttention. OPERAND is the matmul operand dtype: the input dtype when compiled,
float32 in the interpreter, whose `tl.dot` multiplies the raw bits of 16-bit floats (triton 3.9); the upcast
is exact.
"""

import triton
import triton.language as tl

INTERPRETED = bool(triton.knobs.runtime.interpret)


@triton.jit
def attention_forward(
    Q, K, V, BIAS, MASK, OUT, LSE,
    stride_qw, stride_qh, stride_qn, stride_qd,
    stride_kw, stride_kh, stride_kn, stride_kd,
    stride_vw, stride_vh, stride_vn, stride_vd,
    stride_bh, stride_bq, stride_bk,
    stride_mw, stride_mq, stride_mk,
    heads, mask_windows, n_q, n_k, head_dim, scale,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, OPERAND: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    """OUT (B·nW, h, Nq, d) and LSE (B·nW·h, Nq), the natural-log row log-sum-exp, by online softmax."""
    window_head = tl.program_id(1)
    window = window_head // heads
    head = window_head % heads
    q_ptr = Q + window * stride_qw + head * stride_qh
    k_ptr = K + window * stride_kw + head * stride_kh
    v_ptr = V + window * stride_vw + head * stride_vh
    bias_ptr = BIAS + head * stride_bh
    mask_ptr = MASK + (window % mask_windows) * stride_mw
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    dims = tl.arange(0, BLOCK_D)
    row_ok = rows < n_q
    dim_ok = (dims < head_dim)[None, :]
    rows_ok = row_ok[:, None] & dim_ok
    q = tl.load(q_ptr + rows[:, None] * stride_qn + dims[None, :] * stride_qd, mask=rows_ok, other=0.0)
    q = q.to(OPERAND)
    row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    row_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for start in range(0, n_k, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < n_k
        cols_ok = col_ok[:, None] & dim_ok
        k = tl.load(k_ptr + cols[:, None] * stride_kn + dims[None, :] * stride_kd, mask=cols_ok, other=0.0)
        v = tl.load(v_ptr + cols[:, None] * stride_vn + dims[None, :] * stride_vd, mask=cols_ok, other=0.0)
        scores = tl.dot(q, tl.trans(k.to(OPERAND)), input_precision=PRECISION) * scale
        score_ok = row_ok[:, None] & col_ok[None, :]
        if HAS_BIAS:
            bias_ptrs = bias_ptr + rows[:, None] * stride_bq + cols[None, :] * stride_bk
            scores += tl.load(bias_ptrs, mask=score_ok, other=0.0).to(tl.float32)
        if HAS_MASK:
            mask_ptrs = mask_ptr + rows[:, None] * stride_mq + cols[None, :] * stride_mk
            scores += tl.load(mask_ptrs, mask=score_ok, other=0.0).to(tl.float32)
        scores = tl.where(col_ok[None, :], scores, float("-inf"))
        new_max = tl.maximum(row_max, tl.max(scores, 1))
        offset = tl.where(new_max == float("-inf"), 0.0, new_max)  # rows masked with -inf so far
        correction = tl.exp(row_max - offset)
        p = tl.exp(scores - offset[:, None])
        row_sum = row_sum * correction + tl.sum(p, 1)
        p = p.to(Q.dtype.element_ty).to(OPERAND)
        acc = acc * correction[:, None] + tl.dot(p, v.to(OPERAND), input_precision=PRECISION)
        row_max = new_max
    dense_rows = (window_head * n_q + rows)[:, None] * head_dim + dims[None, :]
    tl.store(OUT + dense_rows, (acc / row_sum[:, None]).to(OUT.dtype.element_ty), mask=rows_ok)
    tl.store(LSE + window_head * n_q + rows, row_max + tl.log(row_sum), mask=row_ok)


@triton.jit
def attention_backward(
    Q, K, V, BIAS, MASK, OUT, DOUT, LSE, DQ, DK, DV, DSCORES,
    stride_qw, stride_qh, stride_qn, stride_qd,
    stride_kw, stride_kh, stride_kn, stride_kd,
    stride_vw, stride_vh, stride_vn, stride_vd,
    stride_bh, stride_bq, stride_bk,
    stride_mw, stride_mq, stride_mk,
    heads, mask_windows, n_q, n_k, head_dim, scale,
    HAS_BIAS: tl.constexpr, HAS_MASK: tl.constexpr, PRECISION: tl.constexpr, OPERAND: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, STORE_DSCORES: tl.constexpr,
):  # fmt: skip
    """DQ (fp32, zero-initialised), DK, DV and, with STORE_DSCORES, the fp32 score gradients DSCORES
    (B·nW, h, Nq, Nk) from which the caller sums the bias and mask gradients. OUT, DOUT, DQ, DK and DV are
    contiguous (B·nW, h, N, d)."""
    window_head = tl.program_id(0)
    window = window_head // heads
    head = window_head % heads
    q_ptr = Q + window * stride_qw + head * stride_qh
    k_ptr = K + window * stride_kw + head * stride_kh
    v_ptr = V + window * stride_vw + head * stride_vh
    bias_ptr = BIAS + head * stride_bh
    mask_ptr = MASK + (window % mask_windows) * stride_mw
    dims = tl.arange(0, BLOCK_D)
    dim_ok = (dims < head_dim)[None, :]
    for start_n in range(0, n_k, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        col_ok = cols < n_k
        cols_ok = col_ok[:, None] & dim_ok
        k = tl.load(k_ptr + cols[:, None] * stride_kn + dims[None, :] * stride_kd, mask=cols_ok, other=0.0)
        v = tl.load(v_ptr + cols[:, None] * stride_vn + dims[None, :] * stride_vd, mask=cols_ok, other=0.0)
        k = k.to(OPERAND)
        v = v.to(OPERAND)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        for start_m in range(0, n_q, BLOCK_M):
            rows = start_m + tl.arange(0, BLOCK_M)
            row_ok = rows < n_q
            rows_ok = row_ok[:, None] & dim_ok
            q_offsets = rows[:, None] * stride_qn + dims[None, :] * stride_qd
            q = tl.load(q_ptr + q_offsets, mask=rows_ok, other=0.0).to(OPERAND)
            dense_rows = (window_head * n_q + rows)[:, None] * head_dim + dims[None, :]
            out = tl.load(OUT + dense_rows, mask=rows_ok, other=0.0).to(tl.float32)
            dout = tl.load(DOUT + dense_rows, mask=rows_ok, other=0.0).to(OPERAND)
            lse = tl.load(LSE + window_head * n_q + rows, mask=row_ok, other=float("inf"))
            delta = tl.sum(dout.to(tl.float32) * out, 1)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            score_ok = row_ok[:, None] & col_ok[None, :]
            if HAS_BIAS:
                bias_ptrs = bias_ptr + rows[:, None] * stride_bq + cols[None, :] * stride_bk
                scores += tl.load(bias_ptrs, mask=score_ok, other=0.0).to(tl.float32)
            if HAS_MASK:
                mask_ptrs = mask_ptr + rows[:, None] * stride_mq + cols[None, :] * stride_mk
                scores += tl.load(mask_ptrs, mask=score_ok, other=0.0).to(tl.float32)
            p = tl.where(score_ok, tl.exp(scores - lse[:, None]), 0.0)
            dv += tl.dot(tl.trans(p.to(Q.dtype.element_ty).to(OPERAND)), dout, input_precision=PRECISION)
            dscores = p * (tl.dot(dout, tl.trans(v), input_precision=PRECISION) - delta[:, None])
            if STORE_DSCORES:
                dense_scores = (window_head * n_q + rows)[:, None] * n_k + cols[None, :]
                tl.store(DSCORES + dense_scores, dscores, mask=score_ok)
            dscores = dscores.to(Q.dtype.element_ty).to(OPERAND)
            dk += tl.dot(tl.trans(dscores), q, input_precision=PRECISION)
            dq = tl.load(DQ + dense_rows, mask=rows_ok, other=0.0)
            dq += tl.dot(dscores, k, input_precision=PRECISION) * scale
            tl.store(DQ + dense_rows, dq, mask=rows_ok)
        dense_cols = (window_head * n_k + cols)[:, None] * head_dim + dims[None, :]
        tl.store(DK + dense_cols, (dk * scale).to(DK.dtype.element_ty), mask=cols_ok)
        tl.store(DV + dense_cols, dv.to(DV.dtype.element_ty), mask=cols_ok)
