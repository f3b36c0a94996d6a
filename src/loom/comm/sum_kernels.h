// Private to comm/: the summation loop of the shared-memory collectives
// (shm_collectives.cpp), kept apart so it can be compiled for the machine's widest
// vector unit (AVX-512, AVX2 or the x86-64 baseline, chosen at load time) without
// touching the rest of the library. No torch, no state.
#pragma once

#include <cstddef>

namespace loom::comm {

// For i < count: out[i] = ((in[0][i] + in[1][i]) + in[2][i]) + ... + in[n - 1][i], summed
// in that order, so every caller that passes the same inputs in the same order gets
// bitwise the same result (the shared-memory allreduce relies on this: rank order).
// If `also` is not null, also[i] = out[i] as well. Works in blocks of a few KiB held in
// a local accumulator, so `out` and `also` may each alias any input (in-place sums) and
// the second write costs a cache hit, not a second pass over memory. n >= 1.
void sum_in_order(float* out, float* also, const float* const* in, int n, size_t count);
void sum_in_order(double* out, double* also, const double* const* in, int n, size_t count);

}  // namespace loom::comm
