// Reduce-scatter + all-gather against allreduce, over processes on this machine.
//
//   build/bench/collectives [--ranks 2,4] [--warmup 3] [--iters 10] [--piece-kib 1024]
//
// For each world size N (separate processes: this program re-executes itself as ranks
// 0..N-1 with --rank, rendezvous through a TCPStore on a free loopback port) and each
// buffer size (256 KiB, 1, 4, 16, 64 MiB of float32): the time of an allreduce of the
// buffer (A) against the time of a reduce-scatter followed by an all-gather of the same
// buffer with equal counts (B), per transport, each A being that transport's own
// allreduce. Each transport runs in its own set of rank processes with one Context:
//   ring/tcp  ContextOptions::shared_memory = false. A: Gloo's allreduce over loopback
//             TCP (Group::allreduce); B: comm::RingCollectives over the world's c10d group.
//   shm       ContextOptions::shared_memory = true (the rank refuses to run unless the
//             world uses it). A: Group::allreduce, B: Group::reduce_scatter + all_gather,
//             all three through the shared-memory segment (comm/shm_collectives.h).
//
// Each iteration starts with a Gloo barrier, then times one operation on rank 0 (wall
// clock until its wait() returns); A and B alternate which goes first. After --warmup
// untimed iterations of each, the median of --iters is printed, with the ratio B/A and
// the bus bandwidth S * 2(N-1)/N / t (the bytes a ring allreduce moves per member, so
// the two columns are comparable; GB/s = 1e9 bytes/s). For shm this is a convention for
// comparing A with B, not the bytes the segment copies.
//
// Adding a transport: give it a name in kTransports and, in transport(), a function
// that allreduces a buffer and one that runs reduce-scatter + all-gather of it, both
// waited for (and the ContextOptions it needs in run_rank()).

#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/comm/ring_collectives.h"
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
  int warmup = 3, iters = 10;
  int64_t piece_bytes = 1 << 20;
  std::vector<int64_t> sizes_bytes{256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
};

// The transports, in the order measured for each world size (--transports).
const std::vector<std::string> kTransports{"ring/tcp", "shm"};

// Allreduce of `buffer` (A), waited for.
using AllreduceFn = std::function<void(at::Tensor& buffer)>;
// reduce-scatter + all-gather of `buffer` (equal counts) (B), waited for.
using ShardedFn = std::function<void(at::Tensor& buffer, const std::vector<int64_t>& counts)>;

struct Transport {
  std::string name;
  AllreduceFn allreduce;
  ShardedFn run;
};

// The transport `name` measured in one rank process over `ctx` (made by run_rank() with
// the options it needs). Objects it needs live in `keep`.
Transport transport(const std::string& name, loom::comm::Context& ctx, const Settings& settings,
                    std::vector<std::shared_ptr<void>>& keep) {
  loom::comm::Group& world = ctx.world();
  if (name == "shm") {
    LOOM_CHECK(world.uses_shared_memory(), loom::ConfigError,
               "transport shm: the world does not use shared memory (not all ranks could map the segment)");
    return {name,
            [&world](at::Tensor& buffer) {
              std::vector<at::Tensor> tensors{buffer};
              world.allreduce(tensors).wait();
            },
            [&world](at::Tensor& buffer, const std::vector<int64_t>& counts) {
              world.reduce_scatter(buffer, counts).wait();
              world.all_gather(buffer, counts).wait();
            }};
  }
  LOOM_CHECK(name == "ring/tcp", loom::ConfigError, "unknown transport '{}'", name);
  LOOM_CHECK(!world.uses_shared_memory(), loom::ConfigError, "transport ring/tcp: the world uses shared memory");
  loom::comm::RingCollectives::Options options;
  options.piece_bytes = settings.piece_bytes;
  auto ring = std::make_shared<loom::comm::RingCollectives>(
      c10::intrusive_ptr<c10d::ProcessGroup>::reclaim_copy(&ctx.world().backend()), ctx.world().name(),
      ctx.world().global_ranks(), ctx.world().timeout(), options);
  keep.push_back(ring);
  return {name,
          [&world](at::Tensor& buffer) {
            std::vector<at::Tensor> tensors{buffer};
            world.allreduce(tensors).wait();  // Gloo: shared memory is off
          },
          [ring](at::Tensor& buffer, const std::vector<int64_t>& counts) {
            ring->reduce_scatter(buffer, counts)->wait();
            ring->all_gather(buffer, counts)->wait();
          }};
}

// Seconds for fn() on this rank, all ranks starting together.
double timed(loom::comm::Context& ctx, const std::function<void()>& fn) {
  ctx.world().barrier().wait();
  const auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One rank process: measures every size over transport `name`; rank 0 prints the rows.
int run_rank(const std::string& name, int rank, int world, int port, const Settings& settings) {
  const loom::DistEnv env = loom::bench::rank_env(rank, world, port);
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(120);
  options.shared_memory = name == "shm";  // else Gloo over loopback TCP, the ring over the same group
  auto ctx = loom::comm::Context::create(env, options);
  std::vector<std::shared_ptr<void>> keep;
  const Transport t = transport(name, *ctx, settings, keep);

  for (int64_t bytes : settings.sizes_bytes) {
    const int64_t numel = bytes / 4;
    const std::vector<int64_t> counts(world, numel / world);  // the sizes divide by 4
    at::Tensor a = torch::rand({numel}), b = a.clone();       // touched before timing
    const auto allreduce = [&] { t.allreduce(a); };
    const auto rs_ag = [&] { t.run(b, counts); };
    std::vector<double> ta, tb;
    for (int i = 0; i < settings.warmup + settings.iters; ++i) {
      double x, y;
      if (i % 2 == 0) {
        x = timed(*ctx, allreduce);
        y = timed(*ctx, rs_ag);
      } else {
        y = timed(*ctx, rs_ag);
        x = timed(*ctx, allreduce);
      }
      if (i >= settings.warmup) {
        ta.push_back(x);
        tb.push_back(y);
      }
    }
    if (rank == 0) {
      const double ma = median(ta), mb = median(tb);
      const double bus = static_cast<double>(bytes) * 2.0 * (world - 1) / world / 1e9;
      std::printf("%5d  %8.2f  %-10s  %12.3f  %12.3f  %6.2f  %10.2f  %10.2f\n", world, bytes / 1048576.0,
                  t.name.c_str(), ma * 1e3, mb * 1e3, mb / ma, bus / ma, bus / mb);
      std::fflush(stdout);
    }
  }
  // Which transport carried the allreduces (A), as Group counts them.
  const auto counts = ctx->world().allreduce_counts();
  LOOM_CHECK(name == "shm" ? counts.c10d == 0 : counts.shared_memory == 0, loom::ConfigError,
             "transport {}: {} allreduces went through shared memory, {} through c10d", name, counts.shared_memory,
             counts.c10d);
  ctx->world().barrier().wait();
  return 0;
}

// Runs `world` copies of this program as ranks of transport `name`; returns whether all exited 0.
bool run_world(const char* self, const std::string& name, int world, const Settings& settings) {
  return loom::bench::run_rank_processes(
      self, world,
      {"--transport", name, "--warmup", std::to_string(settings.warmup), "--iters", std::to_string(settings.iters),
       "--piece-kib", std::to_string(settings.piece_bytes >> 10)});
}

}  // namespace

int main(int argc, char** argv) {
  loom::init_process();
  CLI::App app{"reduce-scatter + all-gather against allreduce, processes over loopback"};
  Settings settings;
  std::vector<int> worlds{2, 4};
  std::vector<std::string> names = kTransports;
  std::string name;
  int rank = -1, world = 0, port = 0;
  int64_t piece_kib = settings.piece_bytes >> 10;
  app.add_option("--ranks", worlds, "world sizes to measure")->delimiter(',');
  app.add_option("--warmup", settings.warmup, "untimed iterations of each first");
  app.add_option("--iters", settings.iters, "timed iterations of each (the median is printed)");
  app.add_option("--piece-kib", piece_kib, "RingCollectives::Options::piece_bytes / 1024");
  app.add_option("--transports", names, "transports to measure (ring/tcp, shm)")
      ->delimiter(',')
      ->check(CLI::IsMember(kTransports));
  app.add_option("--transport", name, "(internal) run as a rank of this transport");
  app.add_option("--rank", rank, "(internal) run as this rank");
  app.add_option("--world", world, "(internal)");
  app.add_option("--port", port, "(internal)");
  CLI11_PARSE(app, argc, argv);
  settings.piece_bytes = piece_kib << 10;
  torch::set_num_threads(1);
  loom::log::set_level(loom::log::Level::warn);
  try {
    if (rank >= 0) return run_rank(name, rank, world, port, settings);
    std::printf(
        "collectives: allreduce vs reduce-scatter + all-gather, float32, equal counts; ring/tcp: Gloo allreduce "
        "over loopback TCP vs the ring; shm: both through shared memory; median of %d after %d warm-up, alternating; "
        "piece %lld KiB; busbw = S*2(N-1)/N/t, GB/s\n",
        settings.iters, settings.warmup, static_cast<long long>(piece_kib));
    std::printf("%5s  %8s  %-10s  %12s  %12s  %6s  %10s  %10s\n", "ranks", "MiB", "transport", "allreduce ms",
                "rs+ag ms", "ratio", "busbw AR", "busbw rs+ag");
    std::fflush(stdout);
    bool ok = true;
    for (int w : worlds)
      for (const auto& n : names) ok = run_world(argv[0], n, w, settings) && ok;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "collectives: %s\n", e.what());
    return 1;
  }
}
