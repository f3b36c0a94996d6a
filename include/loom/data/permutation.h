// The global-batch order (contract, DESIGN.md "Equivalence"): each epoch's order of the
// training set is one seeded permutation, the same in every process, and step t's
// global batch is its slice [t*B, (t+1)*B). Every strategy and every rank computes it
// with this function, so it must never depend on libtorch, the platform or the number of
// workers. Changing the algorithm changes every run's results: do it only on purpose
// (tests/unit/data/permutation_test.cpp pins golden values).
//
// Algorithm: rng = Rng(seed, stream = epoch) (see rng.h); p = [0, 1, ..., n-1];
// for i = n-1 down to 1: j = rng.below(i + 1); swap(p[i], p[j]).
// A Python transcription that reproduces it exactly:
//
//   M = (1 << 64) - 1
//   def mix64(z):
//       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//       return z ^ (z >> 31)
//   def rotl(x, k): return ((x << k) | (x >> (64 - k))) & M
//   class Rng:
//       def __init__(self, seed, stream=0):
//           x = mix64(seed) ^ stream
//           self.s = []
//           for _ in range(4):
//               x = (x + 0x9E3779B97F4A7C15) & M
//               self.s.append(mix64(x))
//       def next(self):
//           s = self.s
//           r = (rotl((s[1] * 5) & M, 7) * 9) & M
//           t = (s[1] << 17) & M
//           s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]
//           s[2] ^= t; s[3] = rotl(s[3], 45)
//           return r
//       def below(self, n):
//           m = self.next() * n
//           if (m & M) < n:
//               threshold = ((1 << 64) - n) % n
//               while (m & M) < threshold:
//                   m = self.next() * n
//           return m >> 64
//   def epoch_permutation(n, seed, epoch):
//       rng, p = Rng(seed, epoch), list(range(n))
//       for i in range(n - 1, 0, -1):
//           j = rng.below(i + 1)
//           p[i], p[j] = p[j], p[i]
//       return p
//
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <vector>

namespace loom::data {

// A uniformly random permutation of [0, n) determined by (seed, epoch) alone.
// Requires n >= 0 and epoch >= 0 (throws loom::Error otherwise).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace loom::data
