// Process-wide set-up that every loom entry point (the CLI, tests, benchmarks, user
// programs) should call once, first thing in main().
#pragma once

namespace loom {

struct ProcessOptions {
  // Keep freed large buffers in the heap instead of returning them to the OS with
  // munmap/trim on every step. On small machines this alone makes a one-thread libtorch
  // CNN 2-3x faster: each fresh page costs a fault (~15 us per 4 KiB here). Both
  // M_MMAP_THRESHOLD and M_TRIM_THRESHOLD must be raised; raising only one is slower
  // than neither. See docs/performance.md for the measurement.
  bool tune_malloc = true;
};

// Idempotent. Applies ProcessOptions; honours LOOM_MALLOC_TUNING=0 to turn the malloc
// tuning off (for measurements), read here once.
void init_process(const ProcessOptions& options = {});

// Sets the thread count of the BLAS library under libtorch when it has its own pool
// (OpenBLAS's pthreads build, Debian's): at::set_num_threads does not reach it, so by
// default every process runs its matrix products on as many threads as the machine has
// cores, which oversubscribes a machine shared by several workers (measured: a 1024x16
// product 0.3 ms alone, 4-17 ms with two processes). No-op without such a library.
void set_blas_threads(int threads);

}  // namespace loom
