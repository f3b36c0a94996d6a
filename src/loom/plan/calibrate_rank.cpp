// One rank of `loom plan --calibrate` (calibrate.h): what every rank measures, in the
// same order on every rank, and what rank 0 writes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "loom/comm/context.h"
#include "loom/comm/group.h"
#include "loom/core/atomic_file.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/launch/free_port.h"
#include "loom/plan/calibrate.h"
#include "loom/ps/server.h"
#include "loom/ps/worker.h"
#include "loom/strategies/bench_slowdown.h"

namespace loom::plan {

namespace {

using Clock = std::chrono::steady_clock;

// The sizes measured for every collective: 4 KiB .. 64 MiB of float32, x8.
const std::vector<int64_t> kCollectiveBytes{4 << 10, 32 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
// The sizes of one parameter-server round.
const std::vector<int64_t> kPsBytes{4 << 10, 1 << 20, 4 << 20};
constexpr int64_t kSmallMessageBytes = 4;
constexpr int64_t kLargeMessageBytes = 16 << 20;
// Through the shared-memory rings: the largest power of two a ring takes whole.
constexpr int64_t kLargeShmMessageBytes = 2 << 20;
static_assert(kLargeShmMessageBytes <= Cluster::kShmP2pMaxBytes);
constexpr double kKernelAloneS = 0.1;  // the contention kernel's time alone
constexpr int kContentionSweeps = 2;
constexpr int kSpeedRounds = 3;  // each rank alone, for its speed

// Shares of CalibrateOptions::budget_s.
constexpr double kCollectiveShare = 0.6, kPsShare = 0.25, kP2pShare = 0.05;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string size_text(int64_t bytes) {
  return bytes >= (1 << 20) ? fmt::format("{} MiB", bytes >> 20) : fmt::format("{} KiB", bytes >> 10);
}

// This process's resident memory (VmRSS in /proc/self/status), bytes; 0 if unknown.
int64_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// How many timed runs after the first fit what is left of `point_s` once the warm-up
// and the first have cost `spent_s`, each costing about `each_s`: 0 .. max_repeats - 1.
int more_repeats(double point_s, double spent_s, double each_s, int max_repeats) {
  const double fit = each_s > 0 ? std::floor((point_s - spent_s) / each_s) : max_repeats;
  return static_cast<int>(std::clamp(fit, 0.0, max_repeats - 1.0));
}

// fn() on this rank, timed from the end of a barrier of `g`.
double timed(comm::Group& g, const std::function<void()>& fn) {
  g.barrier().wait();
  const auto start = Clock::now();
  fn();
  return seconds_since(start);
}

// Rank 0's median time of fn() over the members of `g`: one warm-up, one timed run,
// then as many more as rank 0 finds fit `point_s` (every member runs the same count).
// The barriers count against `point_s` too.
double measure_point(comm::Group& g, double point_s, int max_repeats, const std::function<void()>& fn) {
  const auto start = Clock::now();
  timed(g, fn);
  const auto first = Clock::now();
  std::vector<double> times{timed(g, fn)};
  const int more = static_cast<int>(
      g.broadcast_value(more_repeats(point_s, seconds_since(start), seconds_since(first), max_repeats), 0));
  for (int i = 0; i < more; ++i) times.push_back(timed(g, fn));
  return median(times);
}

class RankCalibration {
 public:
  RankCalibration(const DistEnv& env, const CalibrateOptions& options) : env_(env), options_(options) {}

  void run(const std::string& out) {
    part("connecting", [&] { connect(); });
    // Before any large buffer: what a process costs once libtorch and comm are up.
    const double rss = max_over_ranks(static_cast<double>(resident_bytes()));
    part("contention", [&] { measure_contention(); });
    part("point to point", [&] { measure_p2p(); });
    part("shm collectives", [&] {
      measure_collectives(*shm_, "shm", shm_->world().uses_shared_memory() ? &result_.allreduce_shm : nullptr,
                          &result_.rs_ag_shm);
    });
    part("tcp collectives", [&] { measure_collectives(*tcp_, "tcp", &result_.allreduce_tcp, &result_.rs_ag_tcp); });
    part("ps", [&] { measure_ps(); });
    shm_->world().barrier().wait();
    buffers_.clear();
    if (env_.rank != 0) return;
    Cluster c = Cluster::this_machine(env_.world_size);
    c.process_base_bytes = static_cast<int64_t>(rss);
    c.intra = result_.intra;
    c.inter = result_.intra;
    c.intra_shm = result_.intra_shm;
    c.contention = result_.contention;
    c.process_speeds = result_.process_speeds;
    c.allreduce_shm = result_.allreduce_shm;
    c.allreduce_tcp = result_.allreduce_tcp;
    c.rs_ag_shm = result_.rs_ag_shm;
    c.rs_ag_tcp = result_.rs_ag_tcp;
    c.ps = result_.ps;
    write_file_atomic(out, c.to_toml());
  }

 private:
  bool lead() const { return env_.rank == 0; }

  void part(const char* name, const std::function<void()>& fn) {
    const auto start = Clock::now();
    fn();
    if (lead()) log::info("calibrate: {} took {:.2f} s", name, seconds_since(start));
  }
  int world() const { return env_.world_size; }

  // Two contexts over the same ranks: shared-memory collectives, and Gloo over TCP only
  // (its store on a port rank 0 picks and announces through the first).
  void connect() {
    comm::ContextOptions o;
    o.timeout = options_.timeout;
    o.shared_memory = true;
    shm_ = comm::Context::create(env_, o);
    if (lead()) shm_->store_set("calibrate/tcp_port", std::to_string(launch::pick_free_port()));
    DistEnv tcp_env = env_;
    tcp_env.master_port = std::stoi(shm_->store_get("calibrate/tcp_port"));
    o.shared_memory = false;
    tcp_ = comm::Context::create(tcp_env, o);
    if (!shm_->world().uses_shared_memory() && lead()) {
      log::warn("calibrate: the ranks could not share memory; no shared-memory tables");
    }
    if (lead()) log::info("calibrate: {} ranks connected", world());
  }

  double max_over_ranks(double v) {
    const auto all = shm_->world().allgather_values(v);
    return *std::max_element(all.begin(), all.end());
  }

  // k = 1..world ranks run the kernel at once; the median of the busy ranks' times over
  // the time of one alone. One thread each (contention is defined per one-thread process).
  void measure_contention() {
    comm::Group& g = shm_->world();
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    set_blas_threads(1);
    const at::Tensor a = at::rand({256, 256}), b = at::rand({256, 256});
    at::Tensor c = at::empty({256, 256});
    const auto kernel = [&](int64_t iterations) {
      const auto start = Clock::now();
      for (int64_t i = 0; i < iterations; ++i) at::mm_out(c, a, b);
      return seconds_since(start);
    };
    // Rank 0 alone sizes the loop: ~kKernelAloneS (from a run of at least 30 ms, doubling).
    double iterations = 0;
    if (lead()) {
      kernel(5);
      int64_t n = 8;
      double t = kernel(n);
      while (t < 0.03) t = kernel(n *= 2);
      iterations = std::max(1.0, std::round(kKernelAloneS * n / t));
    }
    iterations = g.broadcast_value(iterations, 0);
    // Two sweeps over k; per k the median of the busy ranks' times over both.
    std::vector<std::vector<double>> times(world());
    for (int sweep = 0; sweep < kContentionSweeps; ++sweep) {
      for (int k = 1; k <= world(); ++k) {
        g.barrier().wait();
        const double t = env_.rank < k ? kernel(static_cast<int64_t>(iterations)) : 0;
        const auto all = g.allgather_values(t);
        times[k - 1].insert(times[k - 1].end(), all.begin(), all.begin() + k);
      }
    }
    const double alone = median(times[0]);
    for (int k = 1; k <= world(); ++k) {
      result_.contention.push_back(k == 1 ? 1.0 : std::max(1.0, median(times[k - 1]) / alone));
    }
    measure_speeds([&] { return kernel(static_cast<int64_t>(iterations)); });
    at::set_num_threads(threads);
    set_blas_threads(threads);
    if (lead()) {
      log::info(
          "calibrate: contention (slowdown with 1..{} busy one-thread processes, {:.0f} 256x256 matmuls "
          "{:.3f} s alone): {:.2f}",
          world(), iterations, alone, fmt::join(result_.contention, ", "));
    }
  }

  // Every rank's own speed: the same loop on each rank alone, one after another,
  // kSpeedRounds times (--bench-slowdown's rank stretched as the trainer stretches a
  // step); the fastest rank's median time over each rank's, 1 within kSpeedTolerance.
  // Alone, so that sharing cores (the contention table) is not counted twice.
  void measure_speeds(const std::function<double()>& kernel) {
    comm::Group& g = shm_->world();
    const double factor = strategies::bench_slowdown_for(options_.bench_slowdown, env_.rank);
    std::vector<std::vector<double>> times(world());
    for (int round = 0; round < kSpeedRounds; ++round) {
      for (int r = 0; r < world(); ++r) {
        g.barrier().wait();
        const double t = env_.rank == r ? strategies::apply_bench_slowdown(factor, kernel()) : 0.0;
        times[r].push_back(g.allgather_values(t)[r]);
      }
    }
    std::vector<double> medians;
    for (const auto& t : times) medians.push_back(median(t));
    const double fastest = *std::min_element(medians.begin(), medians.end());
    std::vector<double> measured;
    for (double m : medians) {
      const double speed = m > 0 ? fastest / m : 1.0;
      measured.push_back(speed);
      result_.process_speeds.push_back(speed >= 1.0 - Cluster::kSpeedTolerance ? 1.0 : speed);
    }
    if (lead()) {
      log::info("calibrate: process speeds, each alone: {:.3f} (written as {:.3f})", fmt::join(measured, ", "),
                fmt::join(result_.process_speeds, ", "));
    }
  }

  // Ranks 0 and 1 ping-pong over Gloo TCP (intra), then through the shared-memory rings
  // (intra_shm, when the shared-memory world has them): latency from 4 bytes,
  // bandwidth from 16 MiB over TCP and 2 MiB through the rings.
  void measure_p2p() {
    result_.intra = ping_pong(tcp_->world(), "TCP", kLargeMessageBytes);
    comm::Group& shm = shm_->world();
    const int64_t before = shm.message_counts().shared_memory;
    const Link link = ping_pong(shm, "shared memory", kLargeShmMessageBytes);
    // Every message through the rings on rank 0 (none redirected through Gloo), else
    // this group has none (too many ranks, or shared memory unavailable).
    const bool rings = shm.broadcast_value(static_cast<double>(shm.message_counts().shared_memory - before > 0 &&
                                                               shm.message_counts().redirected == 0),
                                           0) > 0;
    if (rings) result_.intra_shm = link;
  }

  // Half the median round trip between ranks 0 and 1 of `g` at 4 bytes and at `large`.
  Link ping_pong(comm::Group& g, const char* transport, int64_t large_bytes) {
    Link link;
    if (env_.rank <= 1) {
      const int peer = 1 - env_.rank;
      const auto round_trips = [&](int64_t bytes, int count) {
        std::vector<at::Tensor> buffer{at::zeros({bytes / 4})};
        std::vector<double> times;
        for (int i = 0; i < count + 1; ++i) {
          const auto start = Clock::now();
          if (env_.rank == 0) {
            g.send(buffer, peer, 7).wait();
            g.recv(buffer, peer, 7).wait();
          } else {
            g.recv(buffer, peer, 7).wait();
            g.send(buffer, peer, 7).wait();
          }
          if (i > 0) times.push_back(seconds_since(start));  // the first is a warm-up
        }
        return median(times);
      };
      const double point_s = options_.budget_s * kP2pShare / 4;  // two sizes, two transports
      const double small = round_trips(kSmallMessageBytes, 30) / 2;
      const auto start = Clock::now();
      round_trips(large_bytes, 1);
      // As many large round trips as fit; both ranks must agree: rank 0 tells rank 1.
      std::vector<at::Tensor> count{at::full({1}, 0.0f)};
      if (env_.rank == 0) {
        const double each = seconds_since(start);
        count[0].fill_(1 + more_repeats(point_s, each, each, options_.max_repeats));
        g.send(count, 1, 8).wait();
      } else {
        g.recv(count, 0, 8).wait();
      }
      const double large = round_trips(large_bytes, static_cast<int>(count[0].item<float>())) / 2;
      link.latency_s = small;
      link.bandwidth_Bps = static_cast<double>(large_bytes) / std::max(large - small, 1e-9);
      if (lead()) {
        log::info("calibrate: point to point over {}: latency {:.1f} us, bandwidth {:.2f} GB/s", transport, small * 1e6,
                  link.bandwidth_Bps / 1e9);
      }
    }
    g.barrier().wait();
    return link;
  }

  // Allreduce and reduce-scatter + all-gather over the first n ranks, n = 2..world, on
  // the context's transport. `allreduce` null: not measured (no shared memory).
  void measure_collectives(comm::Context& ctx, const std::string& transport, std::vector<Measurement>* allreduce,
                           std::vector<Measurement>* rs_ag) {
    if (!allreduce) return;
    if (buffers_.empty()) {
      // Ones: the values do not change the time, and at::rand costs more than the sums.
      const int64_t largest = *std::max_element(kCollectiveBytes.begin(), kCollectiveBytes.end()) / 4;
      buffers_ = {at::ones({largest}), at::ones({largest})};
    }
    const int points = 2 * (world() - 1) * static_cast<int>(kCollectiveBytes.size());
    const double point_s = options_.budget_s * kCollectiveShare / 2 / points;
    for (int n = 2; n <= world(); ++n) {
      const auto start = Clock::now();
      if (env_.rank < n) {
        std::shared_ptr<comm::Group> sub;
        if (n < world()) {
          std::vector<int> ranks(n);
          for (int r = 0; r < n; ++r) ranks[r] = r;
          sub = ctx.new_group(ranks, fmt::format("calibrate-{}-{}", transport, n));
        }
        comm::Group& g = sub ? *sub : ctx.world();
        std::string line;
        for (const int64_t bytes : kCollectiveBytes) {
          const int64_t numel = bytes / 4;
          std::vector<int64_t> counts(n, numel / n);
          for (int64_t r = 0; r < numel % n; ++r) ++counts[r];
          // Prefixes of two buffers made once: a fresh 64 MiB costs ~0.5 s of page faults here.
          std::vector<at::Tensor> a{buffers_[0].narrow(0, 0, numel)};
          const at::Tensor b = buffers_[1].narrow(0, 0, numel);
          const double ar = measure_point(g, point_s, options_.max_repeats, [&] { g.allreduce(a).wait(); });
          const double pair = measure_point(g, point_s, options_.max_repeats, [&] {
            g.reduce_scatter(b, counts).wait();
            g.all_gather(b, counts).wait();
          });
          allreduce->push_back({n, 0, bytes, ar});
          rs_ag->push_back({n, 0, bytes, pair});
          line += fmt::format("{}{} {:.3f}/{:.3f}", line.empty() ? "" : ", ", size_text(bytes), ar * 1e3, pair * 1e3);
        }
        if (lead()) {
          log::info("calibrate: {} {} ranks, ms allreduce/rs+ag: {} ({:.2f} s)", transport, n, line,
                    seconds_since(start));
        }
      }
      ctx.world().barrier().wait();
    }
  }

  // One (workers, servers) combination at `bytes`: ranks 0..W-1 are workers, the next S
  // servers (a thread each, the main thread keeps the world's barriers), the rest idle.
  double ps_round(int workers, int servers, int64_t bytes, double point_s) {
    const std::string prefix = fmt::format("calibrate/ps/{}x{}/{}/", workers, servers, bytes);
    // Slices small enough that every server holds a share, as a real model's would.
    const int64_t slice_bytes = std::max<int64_t>(4, (bytes / servers + 3) / 4 * 4);
    const int rank = env_.rank;
    std::unique_ptr<ps::Server> server;
    std::thread serving;
    std::exception_ptr server_error;
    struct Join {
      std::unique_ptr<ps::Server>& server;
      std::thread& thread;
      ~Join() {
        if (!thread.joinable()) return;
        server->request_stop();
        thread.join();
      }
    } join{server, serving};
    if (rank >= workers && rank < workers + servers) {
      ps::ServerOptions o;
      o.server_index = rank - workers;
      o.num_workers = workers;
      o.consistency = ps::Consistency::sync;
      o.timeout = options_.timeout;
      o.van.timeout = options_.timeout;
      o.van.limits = ps::limits_for_slices(slice_bytes);
      server = std::make_unique<ps::Server>(o);
      shm_->store_set(prefix + std::to_string(o.server_index), server->endpoint());
      serving = std::thread([&server, &server_error] {
        try {
          server->run();
        } catch (...) {
          server_error = std::current_exception();
        }
      });
    }
    std::unique_ptr<ps::Worker> worker;
    std::vector<at::Tensor> params, grads;
    if (rank < workers) {
      ps::WorkerOptions o;
      o.worker_id = static_cast<uint32_t>(rank);
      o.slice_bytes = slice_bytes;
      o.timeout = options_.timeout;
      for (int i = 0; i < servers; ++i) o.servers.push_back(shm_->store_get(prefix + std::to_string(i)));
      worker = std::make_unique<ps::Worker>(std::vector<ps::TensorSpec>{{"calibrate", {bytes / 4}, 4}}, o);
      params = {at::ones({bytes / 4})};
      grads = {at::full({bytes / 4}, 1e-3f)};
      if (rank == 0) worker->init(params);
    }
    shm_->world().barrier().wait();  // every key exists before anyone pulls
    double result = 0;
    if (worker) {
      worker->wait(worker->pull(params, 0));
      int64_t clock = 0;
      const auto round = [&] {
        const auto start = Clock::now();
        const auto pushed = worker->push(grads, 1.0 / workers, clock);
        const auto pulled = worker->pull(params, clock + 1);
        worker->wait(pushed);
        worker->wait(pulled);
        ++clock;
        return seconds_since(start);
      };
      const double warm_up = round();
      std::vector<double> times{round()};
      // Every worker runs as many rounds as worker 0 finds fit (sync: they must agree).
      if (rank == 0)
        shm_->store_set(prefix + "more",
                        std::to_string(more_repeats(point_s, warm_up + times[0], times[0], options_.max_repeats)));
      const int more = std::stoi(shm_->store_get(prefix + "more"));
      for (int i = 0; i < more; ++i) times.push_back(round());
      result = median(times);
      worker->done();
    }
    if (serving.joinable()) {
      serving.join();
      if (server_error) std::rethrow_exception(server_error);
    }
    shm_->world().barrier().wait();
    return result;
  }

  void measure_ps() {
    std::vector<std::pair<int, int>> combos;
    for (int w = 1; w < world(); ++w) combos.push_back({w, 1});
    if (world() >= 4) combos.push_back({world() - 2, 2});
    const double point_s = options_.budget_s * kPsShare / (combos.size() * kPsBytes.size());
    for (const auto& [workers, servers] : combos) {
      std::string line;
      for (const int64_t bytes : kPsBytes) {
        const double t = ps_round(workers, servers, bytes, point_s);
        result_.ps.push_back({workers, servers, bytes, t});
        line += fmt::format("{}{} {:.3f}", line.empty() ? "" : ", ", size_text(bytes), t * 1e3);
      }
      if (lead()) log::info("calibrate: ps {} worker(s), {} server(s), ms per push+pull: {}", workers, servers, line);
    }
  }

  DistEnv env_;
  CalibrateOptions options_;
  std::shared_ptr<comm::Context> shm_, tcp_;
  std::vector<at::Tensor> buffers_;  // the collectives' two buffers, of the largest size
  Cluster result_;
};

}  // namespace

void calibrate_rank(const DistEnv& env, const CalibrateOptions& options, const std::string& out) {
  LOOM_CHECK(env.world_size >= 2, ConfigError, "calibrate-rank needs a world of at least 2 processes, got {}",
             env.world_size);
  LOOM_CHECK(options.threads >= 1, ConfigError, "--threads must be at least 1, got {}", options.threads);
  LOOM_CHECK(options.max_repeats >= 1, ConfigError, "--max-repeats must be at least 1, got {}", options.max_repeats);
  at::set_num_threads(options.threads);
  set_blas_threads(options.threads);
  RankCalibration(env, options).run(out);
}

}  // namespace loom::plan
