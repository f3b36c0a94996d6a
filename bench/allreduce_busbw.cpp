// Same-host allreduce bus bandwidth against memcpy, measured in the same run.
//
//   build/bench/allreduce_busbw [--ranks 2,3,4] [--rounds 7] [--min-kib 4] [--max-mib 64]
//
// For each world size N (separate processes: this program re-executes itself as ranks
// 0..N-1, rendezvous through a TCPStore on a free loopback port, one comm::Context with
// shared memory on; a rank refuses to run unless the world uses it) and each buffer size
// S from 4 KiB to 64 MiB (x4 steps) of float32: every rank allreduces its buffer K times
// back to back (Group::allreduce, waited for each time, as a trainer waits for its last
// bucket), K chosen so a round moves about 256 MiB (at least 5, at most 2000). A round
// starts with a barrier; rank 0 times it; t = round time / K. After 1 untimed round, the
// median of --rounds rounds is printed as
//   busbw = S * 2(N-1)/N / t   (nccl-tests' convention: the bytes a ring allreduce moves
//                               per member; comparable across N and with memcpy)
//   algbw = S / t
// next to memcpy: rank 0 copying S bytes between two warm private buffers of its own
// (the median of the same number of rounds, each the mean of K copies), measured in the
// same world between the allreduce rounds while the other ranks wait in a barrier. The
// issue's target (issue 19): busbw >= 7 GB/s at 16 MiB with 2 ranks.
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "rank_processes.h"

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Settings {
  int rounds = 7;
  int64_t min_bytes = 4 << 10, max_bytes = int64_t{64} << 20;
};

int64_t repeats_for(int64_t bytes) { return std::clamp<int64_t>((int64_t{256} << 20) / bytes, 5, 2000); }

// One rank process: every size; rank 0 prints a row per size.
int run_rank(int rank, int world, int port, const Settings& settings) {
  const loom::DistEnv env = loom::bench::rank_env(rank, world, port);
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(120);
  options.shared_memory = true;
  auto ctx = loom::comm::Context::create(env, options);
  loom::comm::Group& group = ctx->world();
  LOOM_CHECK(group.uses_shared_memory(), loom::ConfigError,
             "rank {}: the world does not use shared memory (not all ranks could map the segment)", rank);

  for (int64_t bytes = settings.min_bytes; bytes <= settings.max_bytes; bytes *= 4) {
    const int64_t k = repeats_for(bytes);
    // Zeros: they stay finite over K sums (random values would grow as N^K); written,
    // so touched before timing. Adding zeros costs what adding any normal float does.
    std::vector<at::Tensor> buffer{torch::zeros({bytes / 4})};
    std::vector<char> src(bytes, 1), dst(bytes, 2);  // memcpy's, touched too
    std::vector<double> t_allreduce, t_memcpy;
    for (int round = 0; round <= settings.rounds; ++round) {
      group.barrier().wait();
      auto start = Clock::now();
      for (int64_t i = 0; i < k; ++i) group.allreduce(buffer).wait();
      const double t = std::chrono::duration<double>(Clock::now() - start).count() / k;
      group.barrier().wait();
      double tm = 0;
      if (rank == 0) {
        start = Clock::now();
        for (int64_t i = 0; i < k; ++i) {
          std::memcpy(dst.data(), src.data(), bytes);
          asm volatile("" : : "r"(dst.data()) : "memory");  // keep every copy
        }
        tm = std::chrono::duration<double>(Clock::now() - start).count() / k;
      }
      if (round > 0) {
        t_allreduce.push_back(t);
        t_memcpy.push_back(tm);
      }
    }
    if (rank == 0) {
      const double t = median(t_allreduce), tm = median(t_memcpy);
      const double bus = static_cast<double>(bytes) * 2.0 * (world - 1) / world / t / 1e9;
      std::printf("%5d  %10.3f  %6lld  %11.1f  %10.2f  %10.2f  %11.2f  %8.2f\n", world, bytes / 1048576.0,
                  static_cast<long long>(k), t * 1e6, bus, bytes / t / 1e9, bytes / tm / 1e9, bus / (bytes / tm / 1e9));
      std::fflush(stdout);
    }
  }
  group.barrier().wait();
  return 0;
}

// Runs `world` copies of this program as ranks; returns whether all exited 0.
bool run_world(int world, const Settings& settings) {
  return loom::bench::run_rank_processes(
      "allreduce_busbw", world,
      {"--rounds", std::to_string(settings.rounds), "--min-kib", std::to_string(settings.min_bytes >> 10), "--max-mib",
       std::to_string(settings.max_bytes >> 20)});
}

}  // namespace

int main(int argc, char** argv) {
  loom::init_process();
  CLI::App app{"same-host allreduce bus bandwidth against memcpy, processes on this machine"};
  Settings settings;
  std::vector<int> worlds{2, 3, 4};
  int rank = -1, world = 0, port = 0;
  int64_t min_kib = settings.min_bytes >> 10, max_mib = settings.max_bytes >> 20;
  app.add_option("--ranks", worlds, "world sizes to measure")->delimiter(',');
  app.add_option("--rounds", settings.rounds, "timed rounds per size (the median is printed)")
      ->check(CLI::PositiveNumber);
  app.add_option("--min-kib", min_kib, "smallest buffer, KiB")->check(CLI::PositiveNumber);
  app.add_option("--max-mib", max_mib, "largest buffer, MiB")->check(CLI::PositiveNumber);
  app.add_option("--rank", rank, "(internal) run as this rank");
  app.add_option("--world", world, "(internal)");
  app.add_option("--port", port, "(internal)");
  CLI11_PARSE(app, argc, argv);
  settings.min_bytes = min_kib << 10;
  settings.max_bytes = max_mib << 20;
  torch::set_num_threads(1);
  loom::log::set_level(loom::log::Level::warn);
  try {
    if (rank >= 0) return run_rank(rank, world, port, settings);
    std::printf(
        "allreduce_busbw: loom's same-host allreduce (shared memory), float32; median of %d rounds of K back-to-back "
        "allreduces; busbw = S*2(N-1)/N/t; memcpy by rank 0 alone in the same run; GB/s = 1e9 B/s\n",
        settings.rounds);
    std::printf("%5s  %10s  %6s  %11s  %10s  %10s  %11s  %8s\n", "ranks", "MiB", "K", "allreduce us", "busbw GB/s",
                "algbw GB/s", "memcpy GB/s", "bus/cpy");
    std::fflush(stdout);
    bool ok = true;
    for (int w : worlds) ok = run_world(w, settings) && ok;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "allreduce_busbw: %s\n", e.what());
    return 1;
  }
}
