// DistEnv: where this process sits in a job, read once from the environment at start-up.
//
// Sources, first match wins (contract, DESIGN.md):
//   1. torchrun's names: RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT
//   2. Slurm: SLURM_PROCID SLURM_NTASKS SLURM_LOCALID (SLURM_NTASKS_PER_NODE)
//   3. Open MPI: OMPI_COMM_WORLD_RANK OMPI_COMM_WORLD_SIZE OMPI_COMM_WORLD_LOCAL_RANK
//   4. none: a single process, rank 0 of 1.
// MASTER_ADDR / MASTER_PORT are read in every case (defaults 127.0.0.1:29500).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace loom {

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  int restart_count = 0;        // LOOM_RESTART_COUNT, set by the launcher on restarts
  std::string source = "none";  // "torchrun", "slurm", "openmpi" or "none"

  // Reads the process environment. Throws ConfigError on malformed or inconsistent
  // values (e.g. RANK=3 with WORLD_SIZE=2), naming the variable.
  static DistEnv from_environment();
  // Same, from any lookup function (tests).
  static DistEnv from_lookup(const std::function<std::optional<std::string>(const std::string&)>& get);
};

// ---- Process set-up ---------------------------------------------------------
// Process-wide set-up that every loom entry point (the CLI, tests, benchmarks, user
// programs) should call once, first thing in main().
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
