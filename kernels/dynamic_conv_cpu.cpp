// DLGSANet's dynamic depth-wise convolution (the official IDynamic CUDA op) for float32 NCHW on CPU:
// out[b, c, y, x] = sum over (i, j) of w[b, g, i, j, y, x] * x[b, c, y + i - p, x + j - p], g = c / (C / G),
// zero padding p = (K - 1) / 2, the (i, j) terms added in row-major order as the tensor-op form does.
// One task per (image, group, output row): the group's K source rows are copied once, zero-padded, into a
// small buffer, and each block of 16 outputs of up to 8 channels is summed in registers, every filter value
// loaded once for all of them (the tensor-op form makes K*K passes over the whole map). The sums keep the
// (i, j) order: whole blocks equal the tensor ops' bit for bit where measured; a row's partial last block is
// summed one output at a time and may differ by rounding. Torch's thread pool.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kLanes = 16;    // outputs per block (one AVX-512 register of floats)
constexpr int64_t kChannels = 8;  // at most this many channels per block, summed side by side

// Outputs [x0, x0 + kLanes) of NC channels, in registers; `rows` holds each channel's K zero-padded source
// rows (stride `wp`), `filters` the K*K filter rows of this output row (stride `plane`).
template <int NC>
inline void block(const float* filters, int64_t plane, const float* rows, int64_t wp, int64_t k, int64_t x0,
                  float* const* out) {
    float acc[NC][kLanes] = {};
    for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < k; ++j) {
            const float* f = filters + (i * k + j) * plane + x0;
            for (int c = 0; c < NC; ++c) {
                const float* src = rows + (c * k + i) * wp + x0 + j;
#pragma omp simd
                for (int64_t l = 0; l < kLanes; ++l) acc[c][l] += f[l] * src[l];
            }
        }
    }
    for (int c = 0; c < NC; ++c) std::memcpy(out[c] + x0, acc[c], sizeof(float) * kLanes);
}

// The same sums for outputs [x0, width) of nc channels, one at a time (the row's last, partial block).
inline void tail(const float* filters, int64_t plane, const float* rows, int64_t wp, int64_t k, int64_t nc,
                 int64_t x0, int64_t width, float* const* out) {
    for (int64_t c = 0; c < nc; ++c) {
        for (int64_t col = x0; col < width; ++col) {
            float acc = 0.0f;
            for (int64_t i = 0; i < k; ++i)
                for (int64_t j = 0; j < k; ++j)
                    acc += filters[(i * k + j) * plane + col] * rows[(c * k + i) * wp + col + j];
            out[c][col] = acc;
        }
    }
}

template <int NC>
void blocks(const float* filters, int64_t plane, const float* rows, int64_t wp, int64_t k, int64_t width,
            float* const* out) {
    int64_t x0 = 0;
    for (; x0 + kLanes <= width; x0 += kLanes) block<NC>(filters, plane, rows, wp, k, x0, out);
    tail(filters, plane, rows, wp, k, NC, x0, width, out);
}

using Blocks = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, float* const*);
constexpr Blocks kBlocks[kChannels] = {blocks<1>, blocks<2>, blocks<3>, blocks<4>,
                                       blocks<5>, blocks<6>, blocks<7>, blocks<8>};

}  // namespace

extern "C" int sr_dynamic_dwconv_f32(const float* x, const float* w, float* out, int64_t batch,
                                     int64_t channels, int64_t groups, int64_t k, int64_t h, int64_t width) {
    if (batch < 0 || groups <= 0 || channels % groups != 0 || k <= 0 || k % 2 == 0 || h < 0 || width < 0)
        return 1;
    const int64_t per_group = channels / groups, pad = (k - 1) / 2, plane = h * width;
    const int64_t wp = width + 2 * pad;  // a zero-padded source row
    at::parallel_for(0, batch * groups * h, 1, [&](int64_t begin, int64_t end) {
        std::vector<float> rows(kChannels * k * wp, 0.0f);
        for (int64_t task = begin; task < end; ++task) {
            const int64_t y = task % h, bg = task / h, g = bg % groups, b = bg / groups;
            const float* filters = w + bg * k * k * plane + y * width;  // w[b, g, i, j, y, :]
            for (int64_t c0 = 0; c0 < per_group; c0 += kChannels) {
                const int64_t nc = std::min(kChannels, per_group - c0);
                const int64_t first = b * channels + g * per_group + c0;  // (b, c) of the block's first channel
                float* outs[kChannels];
                for (int64_t c = 0; c < nc; ++c) {
                    outs[c] = out + (first + c) * plane + y * width;
                    for (int64_t i = 0; i < k; ++i) {
                        float* row = rows.data() + (c * k + i) * wp + pad;
                        const int64_t source_row = y + i - pad;
                        if (source_row < 0 || source_row >= h) std::fill_n(row, width, 0.0f);
                        else std::memcpy(row, x + (first + c) * plane + source_row * width, sizeof(float) * width);
                    }
                }
                kBlocks[nc - 1](filters, plane, rows.data(), wp, k, width, outs);
            }
        }
    });
    return 0;
}
