// Reduce-scatter + all-gather against allreduce, over processes on this machine.
//
//   build/bench/collectives [--ranks 2,4] [--warmup 3] [--iters 10] [--piece-kib 1024]
//
// For each world size N (separate processes: this program re-executes itself as ranks
// 0..N-1 with --rank, rendezvous through a TCPStore on a free loopback port) and each
// buffer size (256 KiB, 1, 4, 16, 64 MiB of float32): the time of Gloo's allreduce of
// the buffer (A) against the time of a reduce-scatter followed by an all-gather of the
// same buffer with equal counts (B), per transport. Shared memory is off
// (ContextOptions::shared_memory = false), so Gloo runs over loopback TCP, and the
// transport "ring/tcp" is comm::RingCollectives over the world's c10d group.
//
// Each iteration starts with a Gloo barrier, then times one operation on rank 0 (wall
// clock until its wait() returns); A and B alternate which goes first. After --warmup
// untimed iterations of each, the median of --iters is printed, with the ratio B/A and
// the bus bandwidth S * 2(N-1)/N / t (the bytes a ring allreduce moves per member, so
// the two columns are comparable; GB/s = 1e9 bytes/s).
//
// Adding a transport: append to transports() a name and a function that runs
// reduce-scatter + all-gather of a buffer and waits (e.g. Group::reduce_scatter /
// all_gather over shared memory, with a Context made with shared_memory = true).
#include <sys/wait.h>
#include <unistd.h>

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
#include "loom/launch/free_port.h"

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

// reduce-scatter + all-gather of `buffer` (equal counts), waited for.
using ShardedFn = std::function<void(at::Tensor& buffer, const std::vector<int64_t>& counts)>;

struct Transport {
  std::string name;
  ShardedFn run;
};

// The transports measured in one rank process. Objects they need live in `keep`.
std::vector<Transport> transports(loom::comm::Context& ctx, const Settings& settings,
                                  std::vector<std::shared_ptr<void>>& keep) {
  std::vector<Transport> out;
  loom::comm::RingCollectives::Options options;
  options.piece_bytes = settings.piece_bytes;
  auto ring = std::make_shared<loom::comm::RingCollectives>(
      c10::intrusive_ptr<c10d::ProcessGroup>::reclaim_copy(&ctx.world().backend()), ctx.world().name(),
      ctx.world().global_ranks(), ctx.world().timeout(), options);
  keep.push_back(ring);
  out.push_back({"ring/tcp", [ring](at::Tensor& buffer, const std::vector<int64_t>& counts) {
                   ring->reduce_scatter(buffer, counts)->wait();
                   ring->all_gather(buffer, counts)->wait();
                 }});
  return out;
}

// Seconds for fn() on this rank, all ranks starting together.
double timed(loom::comm::Context& ctx, const std::function<void()>& fn) {
  ctx.world().barrier().wait();
  const auto start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One rank process: measures every size and transport; rank 0 prints the rows.
int run_rank(int rank, int world, int port, const Settings& settings) {
  loom::DistEnv env;
  env.rank = rank;
  env.world_size = world;
  env.local_rank = rank;
  env.local_world_size = world;
  env.master_addr = "127.0.0.1";
  env.master_port = port;
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(120);
  options.shared_memory = false;  // Gloo over loopback TCP; the ring over the same group
  auto ctx = loom::comm::Context::create(env, options);
  std::vector<std::shared_ptr<void>> keep;
  const auto sharded = transports(*ctx, settings, keep);

  for (int64_t bytes : settings.sizes_bytes) {
    const int64_t numel = bytes / 4;
    const std::vector<int64_t> counts(world, numel / world);  // the sizes divide by 4
    at::Tensor a = torch::rand({numel}), b = a.clone();       // touched before timing
    std::vector<at::Tensor> tensors{a};
    const auto allreduce = [&] { ctx->world().allreduce(tensors).wait(); };
    for (const auto& t : sharded) {
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
  }
  ctx->world().barrier().wait();
  return 0;
}

// Runs `world` copies of this program as ranks; returns whether all exited 0.
bool run_world(const char* self, int world, const Settings& settings) {
  const int port = loom::launch::pick_free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<std::string> args{self,
                                    "--rank",
                                    std::to_string(r),
                                    "--world",
                                    std::to_string(world),
                                    "--port",
                                    std::to_string(port),
                                    "--warmup",
                                    std::to_string(settings.warmup),
                                    "--iters",
                                    std::to_string(settings.iters),
                                    "--piece-kib",
                                    std::to_string(settings.piece_bytes >> 10)};
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  bool ok = true;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  loom::init_process();
  CLI::App app{"reduce-scatter + all-gather against allreduce, processes over loopback"};
  Settings settings;
  std::vector<int> worlds{2, 4};
  int rank = -1, world = 0, port = 0;
  int64_t piece_kib = settings.piece_bytes >> 10;
  app.add_option("--ranks", worlds, "world sizes to measure")->delimiter(',');
  app.add_option("--warmup", settings.warmup, "untimed iterations of each first");
  app.add_option("--iters", settings.iters, "timed iterations of each (the median is printed)");
  app.add_option("--piece-kib", piece_kib, "RingCollectives::Options::piece_bytes / 1024");
  app.add_option("--rank", rank, "(internal) run as this rank");
  app.add_option("--world", world, "(internal)");
  app.add_option("--port", port, "(internal)");
  CLI11_PARSE(app, argc, argv);
  settings.piece_bytes = piece_kib << 10;
  torch::set_num_threads(1);
  loom::log::set_level(loom::log::Level::warn);
  try {
    if (rank >= 0) return run_rank(rank, world, port, settings);
    std::printf(
        "collectives: allreduce (Gloo, loopback TCP, shared memory off) vs reduce-scatter + all-gather, float32, "
        "equal counts; median of %d after %d warm-up, alternating; piece %lld KiB; busbw = S*2(N-1)/N/t, GB/s\n",
        settings.iters, settings.warmup, static_cast<long long>(piece_kib));
    std::printf("%5s  %8s  %-10s  %12s  %12s  %6s  %10s  %10s\n", "ranks", "MiB", "transport", "allreduce ms",
                "rs+ag ms", "ratio", "busbw AR", "busbw rs+ag");
    std::fflush(stdout);
    bool ok = true;
    for (int w : worlds) ok = run_world(argv[0], w, settings) && ok;
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "collectives: %s\n", e.what());
    return 1;
  }
}
