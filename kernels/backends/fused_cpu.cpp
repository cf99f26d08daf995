// Fused window attention for CPUs: softmax(scale·q·kᵀ + bias + mask)·v in one pass per window, computed in
// fp32 on fp32 or bfloat16 inputs.
//
// Built at first use by fused_cpu.py (g++ -O3 -march=native -fopenmp, linked to torch's libraries so that
// at::parallel_for runs on torch's own thread pool) and called through ctypes. Each window packs its kᵀ and
// v (all heads) into small zero-padded fp32 buffers that stay in cache, then walks each head's queries four
// rows at a time: scores in registers, bias and mask added, softmax with a vectorised exp, and the product
// with v, without ever writing the Nq × Nk matrix to memory. Inputs are read through their strides (the
// strided views of a packed qkv projection need no copy). GCC vector extensions keep the source portable:
// -march=native picks AVX-512 where the CPU has it.

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;
constexpr int64_t kRows = 4;

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline void store(float* p, v16 x) { *reinterpret_cast<v16u*>(p) = x; }
inline v16 splat(float x) { return v16{} + x; }

// exp(x) for x <= 0 (softmax after subtracting the row maximum): Cephes' expf polynomial, within 2 ulp
// down to -87; below that 0, as no term under 1.6e-38 counts next to the row's maximum term of 1, and
// subnormal probabilities would make the products with v take the CPU's slow subnormal path.
inline v16 vexp(v16 x) {
  const v16 low = splat(-87.0f);
  const v16 magic = splat(12582912.0f);  // 1.5·2^23: adding and subtracting rounds to the nearest integer
  const v16 y = x < low ? low : x;
  v16 n = (y * 1.44269504088896341f + magic) - magic;
  v16 r = y - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
  const v16 e = p * (v16)bits;  // a same-size vector cast reinterprets the bits
  return x < low ? v16{} : e;
}

inline v16 vmax(v16 a, v16 b) { return a > b ? a : b; }

// The maximum / sum of the 16 lanes, in every lane (a butterfly of lane swaps).
inline v16 all_max(v16 x) {
  x = vmax(x, __builtin_shuffle(x, v16i{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7}));
  x = vmax(x, __builtin_shuffle(x, v16i{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11}));
  x = vmax(x, __builtin_shuffle(x, v16i{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13}));
  return vmax(x, __builtin_shuffle(x, v16i{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14}));
}

inline v16 all_sum(v16 x) {
  x += __builtin_shuffle(x, v16i{8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
  x += __builtin_shuffle(x, v16i{4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11});
  x += __builtin_shuffle(x, v16i{2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13});
  return x + __builtin_shuffle(x, v16i{1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14});
}

// q, k, v and the output hold T: float, or bfloat16 as its 16 bits (uint16_t); bias and mask are fp32, and
// all arithmetic is fp32.
template <typename T>
struct Problem {
  const T *q, *k, *v;
  const float *bias, *mask;
  T* out;
  int64_t windows, heads, n_q, n_k, dim, mask_windows;
  int64_t qs[4], ks[4], vs[4], os[4];
  float scale;
};

inline float to_float(float x) { return x; }
inline float to_float(uint16_t x) {
  const uint32_t bits = static_cast<uint32_t>(x) << 16;
  float y;
  __builtin_memcpy(&y, &bits, sizeof y);
  return y;
}

inline void from_float(float x, float* target) { *target = x; }
inline void from_float(float x, uint16_t* target) {  // round to nearest even, NaN kept a quiet NaN
  uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  *target = x != x ? 0x7FC0 : static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

// Bytes from a window's first element of a (windows, heads, tokens, dim) view to past its last one.
template <typename T>
int64_t window_span(const int64_t* strides, int64_t heads, int64_t tokens, int64_t dim) {
  return ((heads - 1) * strides[1] + (tokens - 1) * strides[2] + (dim - 1) * strides[3] + 1) * sizeof(T);
}

// Asks for part `part` of `parts` of a byte range to be brought into cache.
void prefetch(const void* start, int64_t bytes, int64_t part, int64_t parts) {
  const char* base = reinterpret_cast<const char*>(start);
  for (int64_t at = bytes * part / parts; at < bytes * (part + 1) / parts; at += 64)
    __builtin_prefetch(base + at);
}

// Scores of four packed query rows (scaled, kRows × dim) against key columns j0 .. j0 + 16·V of kᵀ (row
// stride kt_stride), into acc.
template <int V>
inline void scores(const float* qp, int64_t dim, const float* kt, int64_t kt_stride, int64_t j0,
                   v16 (&acc)[kRows][V]) {
  for (int64_t c = 0; c < dim; ++c) {
    const float* row = kt + c * kt_stride + j0;
    v16 kv[V];
#pragma GCC unroll 8
    for (int t = 0; t < V; ++t) kv[t] = load(row + kLanes * t);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const v16 qv = splat(qp[r * dim + c]);
#pragma GCC unroll 8
      for (int t = 0; t < V; ++t) acc[r][t] += qv * kv[t];
    }
  }
}

// The same scores stored to s (row stride kt_stride), for rows longer than registers hold.
template <int V>
inline void score_tile(const float* qp, int64_t dim, const float* kt, int64_t kt_stride, int64_t j0,
                       float* s) {
  v16 acc[kRows][V] = {};
  scores(qp, dim, kt, kt_stride, j0, acc);
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < V; ++t) store(s + r * kt_stride + j0 + kLanes * t, acc[r][t]);
}

// For rows of exactly 16·V keys (V <= 4): scores, bias, mask and softmax of four packed query rows without
// leaving registers; writes the numerators (kRows × 16·V) to p and 1 / their sums to inv_sum.
template <int V>
inline void short_rows(const float* qp, int64_t dim, const float* kt, const float* const* bias_rows,
                       const float* const* mask_rows, float* p, float* inv_sum) {
  v16 acc[kRows][V] = {};
  scores(qp, dim, kt, kLanes * V, 0, acc);
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int t = 0; t < V; ++t) {
      if (bias_rows[r]) acc[r][t] += load(bias_rows[r] + kLanes * t);
      if (mask_rows[r]) acc[r][t] += load(mask_rows[r] + kLanes * t);
    }
    v16 top = acc[r][0];
#pragma GCC unroll 4
    for (int t = 1; t < V; ++t) top = vmax(top, acc[r][t]);
    top = all_max(top);
    v16 total = {};
#pragma GCC unroll 4
    for (int t = 0; t < V; ++t) {
      const v16 e = vexp(acc[r][t] - top);
      store(p + r * kLanes * V + kLanes * t, e);
      total += e;
    }
    inv_sum[r] = 1.0f / all_sum(total)[0];
  }
}

typedef void (*ShortRows)(const float*, int64_t, const float*, const float* const*, const float* const*,
                          float*, float*);

ShortRows short_rows_for(int64_t vectors) {
  switch (vectors) {
    case 1: return short_rows<1>;
    case 2: return short_rows<2>;
    case 3: return short_rows<3>;
    default: return short_rows<4>;
  }
}

// Four rows of probabilities (kRows × n_k, row stride p_stride) times packed v (n_k × 16·V), each row
// divided by its sum; the first `rows` rows are written to out (dim contiguous columns, row stride
// out_stride).
template <int V>
inline void value_tile(const float* p, int64_t p_stride, int64_t n_k, const float* vp, const float* inv_sum,
                       float* out, int64_t out_stride, int64_t rows, int64_t dim) {
  v16 acc[kRows][V] = {};
  for (int64_t j = 0; j < n_k; ++j) {
    v16 vv[V];
#pragma GCC unroll 8
    for (int t = 0; t < V; ++t) vv[t] = load(vp + j * kLanes * V + kLanes * t);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const v16 pr = splat(p[r * p_stride + j]);
#pragma GCC unroll 8
      for (int t = 0; t < V; ++t) acc[r][t] += pr * vv[t];
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    float row[kLanes * V];
    for (int t = 0; t < V; ++t) store(row + kLanes * t, acc[r][t] * inv_sum[r]);
    for (int64_t c = 0; c < dim; ++c) out[r * out_stride + c] = row[c];
  }
}

typedef void (*ValueTile)(const float*, int64_t, int64_t, const float*, const float*, float*, int64_t,
                          int64_t, int64_t);

ValueTile value_tile_for(int64_t vectors) {
  switch (vectors) {
    case 1: return value_tile<1>;
    case 2: return value_tile<2>;
    case 3: return value_tile<3>;
    case 4: return value_tile<4>;
    case 5: return value_tile<5>;
    case 6: return value_tile<6>;
    case 7: return value_tile<7>;
    default: return value_tile<8>;
  }
}

// Softmax numerators of one row of scores in place (padding columns set to 0); returns their sum.
inline float softmax_row(float* s, const float* bias_row, const float* mask_row, int64_t n_k, int64_t n_kp) {
  if (bias_row)
    for (int64_t j = 0; j < n_k; ++j) s[j] += bias_row[j];
  if (mask_row)
    for (int64_t j = 0; j < n_k; ++j) s[j] += mask_row[j];
  for (int64_t j = n_k; j < n_kp; ++j) s[j] = -std::numeric_limits<float>::infinity();
  v16 top = splat(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < n_kp; j += kLanes) top = vmax(top, load(s + j));
  top = all_max(top);
  for (int64_t j = 0; j < n_kp; j += kLanes) store(s + j, vexp(load(s + j) - top));
  for (int64_t j = n_k; j < n_kp; ++j) s[j] = 0.0f;
  v16 total = {};
  for (int64_t j = 0; j < n_kp; j += kLanes) total += load(s + j);
  return all_sum(total)[0];
}

// One window, all heads. Its q, k and v are packed first, reading rows in memory order (heads side by side
// in the strided views of a packed projection; whole rows of a head in contiguous tensors), and its output
// is written back the same way, so the hardware prefetchers see streams rather than scattered rows.
template <typename T>
void run_window(const Problem<T>& pr, int64_t window, std::vector<float>& buffer) {
  const int64_t heads = pr.heads, dim = pr.dim, n_q = pr.n_q, n_k = pr.n_k;
  const int64_t n_kp = (n_k + kLanes - 1) / kLanes * kLanes;
  const int64_t v_vectors = (dim + kLanes - 1) / kLanes;
  const int64_t dim_p = v_vectors * kLanes;
  const int64_t n_qp = (n_q + kRows - 1) / kRows * kRows;
  buffer.resize(heads * (dim * n_kp + n_k * dim_p + 2 * n_qp * dim) + kRows * n_kp);
  float* kt = buffer.data();                   // heads × dim × n_kp: kᵀ, zero columns past n_k
  float* vp = kt + heads * dim * n_kp;         // heads × n_k × dim_p: v, zero columns past dim
  float* qp = vp + heads * n_k * dim_p;        // heads × n_qp × dim: scale·q, zero rows past n_q
  float* op = qp + heads * n_qp * dim;         // heads × n_qp × dim: the output
  float* s = op + heads * n_qp * dim;          // kRows × n_kp: scores, then softmax numerators

  const T* k = pr.k + window * pr.ks[0];
  const T* v = pr.v + window * pr.vs[0];
  const T* q = pr.q + window * pr.qs[0];
  T* out = pr.out + window * pr.os[0];
  for (int64_t j = 0; j < n_k; ++j)
    for (int64_t h = 0; h < heads; ++h) {
      const T* key = k + h * pr.ks[1] + j * pr.ks[2];
      const T* value = v + h * pr.vs[1] + j * pr.vs[2];
      float* column = kt + h * dim * n_kp + j;
      float* row = vp + (h * n_k + j) * dim_p;
      for (int64_t c = 0; c < dim; ++c) column[c * n_kp] = to_float(key[c * pr.ks[3]]);
      for (int64_t c = 0; c < dim; ++c) row[c] = to_float(value[c * pr.vs[3]]);
      for (int64_t c = dim; c < dim_p; ++c) row[c] = 0.0f;
    }
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t c = 0; c < dim; ++c)
      for (int64_t j = n_k; j < n_kp; ++j) kt[(h * dim + c) * n_kp + j] = 0.0f;
  for (int64_t i = 0; i < n_qp; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      float* row = qp + (h * n_qp + i) * dim;
      const T* query = q + h * pr.qs[1] + (i < n_q ? i : 0) * pr.qs[2];
      for (int64_t c = 0; c < dim; ++c) row[c] = to_float(query[c * pr.qs[3]]) * pr.scale;
    }

  const ValueTile value = value_tile_for(v_vectors);
  const bool short_keys = n_k == n_kp && n_k <= 4 * kLanes;  // rows that fit in registers
  const ShortRows short_tile = short_rows_for(n_kp / kLanes);
  const bool last = window + 1 == pr.windows;
  for (int64_t h = 0; h < heads; ++h) {
    if (!last) {  // the next window's inputs, a slice per head, while this one computes
      prefetch(q + pr.qs[0], window_span<T>(pr.qs, heads, n_q, dim), h, heads);
      prefetch(k + pr.ks[0], window_span<T>(pr.ks, heads, n_k, dim), h, heads);
      prefetch(v + pr.vs[0], window_span<T>(pr.vs, heads, n_k, dim), h, heads);
    }
    const float* bias = pr.bias ? pr.bias + h * n_q * n_k : nullptr;
    const float* mask = pr.mask ? pr.mask + (window % pr.mask_windows) * n_q * n_k : nullptr;
    const float* head_kt = kt + h * dim * n_kp;
    for (int64_t i0 = 0; i0 < n_q; i0 += kRows) {
      const float* tile_q = qp + (h * n_qp + i0) * dim;
      float inv_sum[kRows];
      if (short_keys) {
        const float* bias_rows[kRows];
        const float* mask_rows[kRows];
        for (int64_t r = 0; r < kRows; ++r) {
          const int64_t i = i0 + r < n_q ? i0 + r : i0;
          bias_rows[r] = bias ? bias + i * n_k : nullptr;
          mask_rows[r] = mask ? mask + i * n_k : nullptr;
        }
        short_tile(tile_q, dim, head_kt, bias_rows, mask_rows, s, inv_sum);
      } else {
        int64_t j0 = 0;
        for (; j0 + 4 * kLanes <= n_kp; j0 += 4 * kLanes) score_tile<4>(tile_q, dim, head_kt, n_kp, j0, s);
        for (; j0 + 2 * kLanes <= n_kp; j0 += 2 * kLanes) score_tile<2>(tile_q, dim, head_kt, n_kp, j0, s);
        for (; j0 < n_kp; j0 += kLanes) score_tile<1>(tile_q, dim, head_kt, n_kp, j0, s);
        for (int64_t r = 0; r < kRows; ++r) {
          const int64_t i = i0 + r < n_q ? i0 + r : i0;
          inv_sum[r] = 1.0f / softmax_row(s + r * n_kp, bias ? bias + i * n_k : nullptr,
                                          mask ? mask + i * n_k : nullptr, n_k, n_kp);
        }
      }
      value(s, n_kp, n_k, vp + h * n_k * dim_p, inv_sum, op + (h * n_qp + i0) * dim, dim, kRows, dim);
    }
  }
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      const float* row = op + (h * n_qp + i) * dim;
      T* target = out + h * pr.os[1] + i * pr.os[2];
      for (int64_t c = 0; c < dim; ++c) from_float(row[c], target + c);
    }
}

template <typename T>
int run(const T* q, const int64_t* q_strides, const T* k, const int64_t* k_strides, const T* v,
        const int64_t* v_strides, const float* bias, const float* mask, int64_t mask_windows, T* out,
        const int64_t* out_strides, int64_t windows, int64_t heads, int64_t n_q, int64_t n_k, int64_t dim,
        float scale) {
  if (dim < 1 || dim > 8 * kLanes || n_k < 1 || out_strides[3] != 1) return 1;
  Problem<T> pr{q, k, v, bias, mask, out, windows, heads, n_q, n_k, dim, mask_windows > 0 ? mask_windows : 1,
                {}, {}, {}, {}, scale};
  for (int i = 0; i < 4; ++i) {
    pr.qs[i] = q_strides[i];
    pr.ks[i] = k_strides[i];
    pr.vs[i] = v_strides[i];
    pr.os[i] = out_strides[i];
  }
  at::parallel_for(0, windows, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer;
    for (int64_t window = begin; window < end; ++window) run_window(pr, window, buffer);
  });
  return 0;
}

}  // namespace

// Returns 0, or 1 for shapes it does not take (head dim outside 1..128, no keys, output rows not contiguous).
extern "C" int sr_window_attention_f32(const float* q, const int64_t* q_strides, const float* k,
                                       const int64_t* k_strides, const float* v, const int64_t* v_strides,
                                       const float* bias, const float* mask, int64_t mask_windows, float* out,
                                       const int64_t* out_strides, int64_t windows, int64_t heads,
                                       int64_t n_q, int64_t n_k, int64_t dim, float scale) {
  return run(q, q_strides, k, k_strides, v, v_strides, bias, mask, mask_windows, out, out_strides, windows,
             heads, n_q, n_k, dim, scale);
}

// bfloat16 q, k, v and output (as 16-bit words), fp32 bias and mask; computes in fp32.
extern "C" int sr_window_attention_bf16(const uint16_t* q, const int64_t* q_strides, const uint16_t* k,
                                        const int64_t* k_strides, const uint16_t* v, const int64_t* v_strides,
                                        const float* bias, const float* mask, int64_t mask_windows,
                                        uint16_t* out, const int64_t* out_strides, int64_t windows,
                                        int64_t heads, int64_t n_q, int64_t n_k, int64_t dim, float scale) {
  return run(q, q_strides, k, k_strides, v, v_strides, bias, mask, mask_windows, out, out_strides, windows,
             heads, n_q, n_k, dim, scale);
}
