// Row sort of float32 values with their indices, equal to torch.sort(dim=-1) on CPU bit for bit, ties
// included: torch's std::sort, on 8-byte (key, index) words compared by integer keys instead of a proxy
// iterator over a value and an index array with a NaN-aware float comparator. (A stable radix sort would be
// faster but orders ties differently, and ties are common: most 128x128 feature maps of a photo have some.)
// Rows run on torch's thread pool.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

// An order-preserving key: key(a) < key(b) exactly when torch's ascending comparator (KeyValueCompAsc:
// NaN after numbers, otherwise `<`, so -0.0 == +0.0) puts a before b. std::sort then makes the same
// comparisons with the same outcomes as torch's, and so the same permutation, ties included.
inline uint32_t key_of(float value) {
    if (std::isnan(value)) return 0xFFFFFFFFu;
    if (value == 0.0f) return 0x80000000u;
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof bits);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// (key << 32 | index), compared by the key alone
inline bool before(uint64_t a, uint64_t b) { return (a >> 32) < (b >> 32); }

}  // namespace

extern "C" int sr_sort_rows_f32(const float* in, float* values, int64_t* indices, int64_t rows, int64_t n) {
    if (rows < 0 || n < 0 || n > 0xFFFFFFFFll) return 1;
    at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
        std::vector<uint64_t> items(n);
        for (int64_t row = begin; row < end; ++row) {
            const float* source = in + row * n;
            for (int64_t i = 0; i < n; ++i) items[i] = (uint64_t(key_of(source[i])) << 32) | uint64_t(i);
            std::sort(items.begin(), items.end(), before);
            float* out = values + row * n;
            int64_t* index = indices + row * n;
            for (int64_t i = 0; i < n; ++i) {
                index[i] = int64_t(items[i] & 0xFFFFFFFFu);
                out[i] = source[index[i]];
            }
        }
    });
    return 0;
}
