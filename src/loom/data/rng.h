// loom's own small pseudo-random generator: xoshiro256** seeded through splitmix64.
//
// Why not std::mt19937 or a torch::Generator: loom needs sequences that are bit-identical
// in every process, on every platform and across libtorch versions (the global-batch
// order of DESIGN.md's equivalence contract, the synthetic data set). The C++ standard
// fixes mt19937's bits but not those of its distributions, and libtorch's sampling
// algorithms change between releases. Everything here is specified exactly, so it can be
// reproduced in other languages (see permutation.h for a Python transcription).
//
// Algorithm (all arithmetic modulo 2^64):
//   mix64(z):        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//                    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//                    return z ^ (z >> 31)                    (splitmix64's finalizer)
//   splitmix64(x):   x += 0x9E3779B97F4A7C15; return mix64(x)   (x is updated in place)
//   Rng(seed, stream): x = mix64(seed) ^ stream; s[0..3] = four successive splitmix64(x)
//   next():          xoshiro256** 1.0 (Blackman & Vigna, 2018):
//                    r = rotl(s1 * 5, 7) * 9; t = s1 << 17;
//                    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45)
//   below(n):        Lemire's unbiased bounded integer, "nearly divisionless" form:
//                    m = next() * n (128-bit); if low64(m) < n: threshold = (2^64 - n) % n,
//                    redraw while low64(m) < threshold; return high64(m)
//   uniform():       (next() >> 11) * 2^-53, in [0, 1)
//   normal pairs:    Box-Muller, u1 = 1 - uniform(), u2 = uniform(),
//                    r = sqrt(-2 ln u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2)
//                    (the integer streams are exact everywhere; normals depend on libm's
//                    log/cos/sin, which may differ in the last bit between platforms)
//
// Thread-safety: none; use one Rng per thread. Copyable: a copy continues the same
// sequence independently. Satisfies UniformRandomBitGenerator.
#pragma once

#include <cstdint>

namespace loom::data {

// splitmix64's output function; a bijection of uint64 with mix64(0) == 0.
uint64_t mix64(uint64_t z);
// One splitmix64 step: advances `state` and returns the next output.
uint64_t splitmix64(uint64_t& state);

class Rng {
 public:
  using result_type = uint64_t;

  // Different (seed, stream) pairs give unrelated sequences; use `stream` to derive
  // independent generators from one user seed (e.g. one per epoch).
  explicit Rng(uint64_t seed, uint64_t stream = 0);

  uint64_t next();
  uint64_t operator()() { return next(); }
  static constexpr uint64_t min() { return 0; }
  static constexpr uint64_t max() { return UINT64_MAX; }

  // Uniform integer in [0, bound), without modulo bias. Requires bound > 0 (throws
  // loom::Error otherwise).
  uint64_t below(uint64_t bound);
  // Uniform double in [0, 1) with 53 random bits.
  double uniform();
  // Fills out[0..n) with normal(mean, stddev) samples, generated in Box-Muller pairs (an
  // odd n discards the last pair's second half).
  void fill_normal(float* out, int64_t n, float mean = 0.0f, float stddev = 1.0f);

 private:
  uint64_t s_[4];
};

}  // namespace loom::data
