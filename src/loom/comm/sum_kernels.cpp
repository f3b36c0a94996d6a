#include "loom/comm/sum_kernels.h"

#include <algorithm>
#include <cstring>

namespace loom::comm {

namespace {

// Elements per block: 4 KiB of float32 for the accumulator, far inside L1.
constexpr size_t kBlockBytes = 4096;

// One block: acc = in[0] + ... + in[n-1] in order. Separate loops per input (not one
// loop over inputs per element) so the compiler vectorizes each as a plain a += b.
// Always inlined, so each clone below compiles these loops for its own vector width (a
// call to one shared copy would run the baseline's loops under every clone).
#define LOOM_INLINE inline __attribute__((always_inline))

template <typename T>
LOOM_INLINE void sum_block(T* __restrict acc, const T* const* in, int n, size_t offset, size_t k) {
  const T* first = in[0] + offset;
  for (size_t i = 0; i < k; ++i) acc[i] = first[i];
  for (int r = 1; r < n; ++r) {
    const T* src = in[r] + offset;
    for (size_t i = 0; i < k; ++i) acc[i] += src[i];
  }
}

template <typename T>
LOOM_INLINE void sum_all(T* out, T* also, const T* const* in, int n, size_t count) {
  constexpr size_t kBlock = kBlockBytes / sizeof(T);
  alignas(64) T acc[kBlock];
  for (size_t b = 0; b < count; b += kBlock) {
    const size_t k = std::min(kBlock, count - b);
    sum_block(acc, in, n, b, k);
    std::memcpy(out + b, acc, k * sizeof(T));
    if (also != nullptr) std::memcpy(also + b, acc, k * sizeof(T));
  }
}

}  // namespace

// One clone per vector width, picked once by the dynamic loader (GCC's target_clones:
// an ifunc resolved on the CPU it runs on). Addition is the same IEEE operation at
// every width, in the same order per element, so the clones agree bitwise.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOOM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LOOM_VECTOR_CLONES
#endif

LOOM_VECTOR_CLONES void sum_in_order(float* out, float* also, const float* const* in, int n, size_t count) {
  sum_all(out, also, in, n, count);
}

LOOM_VECTOR_CLONES void sum_in_order(double* out, double* also, const double* const* in, int n, size_t count) {
  sum_all(out, also, in, n, count);
}

}  // namespace loom::comm
