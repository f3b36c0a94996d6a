// Parameter-server transport against raw loopback TCP, side by side in one program.
//
//   build/bench/ps_goodput [--rounds 5] [--warmup 2] [--iters 10] [--threads 1]
//                          [--mib 4 64] [--servers 1 2] [--small 1] [--tcp 1]
//                          [--server-io-threads 1] [--worker-io-threads 1] [--push-pull 1]
//                          [--slice-kib 1024]
//
// For each size (4 MiB, 64 MiB of parameters) and server count (1, 2): 2 worker threads,
// each with its own ps::Worker over tcp://127.0.0.1, repeat push(gradients) + pull
// (parameters) as one Worker::push_pull (--push-pull 0: a push and a pull) against real
// ps::Server threads (sync mode, SGD with lr 0: the server still combines the pushes and
// runs the optimizer). Goodput = bytes pushed + pulled by both workers / wall time. The
// peer: the same pattern over plain TCP sockets (each worker thread sends its bytes to a
// server thread, which reads them into a reused buffer and sends the same number of bytes
// back; each worker sends from a second, persistent thread while it receives), measured
// by this program in the same round.
//
// Each side also reports the CPU time of the whole process (all threads, user + system)
// per timed iteration: what the work costs, beside how long it takes.
//
// Both sides are timed the same way: every buffer allocated and touched, every thread
// started, and --warmup untimed iterations done before the clock starts (when the last
// worker is ready); then wall time over --iters iterations. Rounds alternate which goes
// first; the median ratio and its range are printed.
//
// Then small messages: push+pull operations per second for a 1 KiB key, 2 workers,
// 1 server (sync mode, so each op also waits for the other worker), timed the same way.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "loom/core/dist_env.h"
#include "loom/core/error.h"
#include "loom/core/log.h"
#include "loom/ps/server.h"
#include "loom/ps/worker.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// CPU seconds used by all of this process's threads so far (servers, workers, ZeroMQ's
// I/O threads, the kernel's work on their behalf).
double process_cpu_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// One timed measurement: goodput, operations per second, and CPU seconds per iteration
// (all threads of the process; only the side being measured runs meanwhile).
struct Rate {
  double bytes_per_s = 0;
  double ops_per_s = 0;
  double cpu_ms_per_iter = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- the peer: plain TCP ------------------------------------------------------------
void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) throw std::runtime_error("send failed");
    p += k;
    n -= static_cast<size_t>(k);
  }
}

void read_all(int fd, char* p, size_t n) {
  while (n > 0) {
    const ssize_t k = ::recv(fd, p, n, 0);
    if (k <= 0) throw std::runtime_error("recv failed");
    p += k;
    n -= static_cast<size_t>(k);
  }
}

// A thread that sends `bytes` from `data` on `fd` each time it is asked to, so a client
// sends and receives at once (as a push and a pull in flight together do) without
// starting a thread per iteration: loom's ps::Worker keeps its I/O threads too.
class Sender {
 public:
  Sender(int fd, const char* data, size_t bytes)
      : thread_([this, fd, data, bytes] {
          for (;;) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [this] { return asked_ > sent_ || stop_; });
            if (stop_ && asked_ == sent_) return;
            lock.unlock();
            write_all(fd, data, bytes);
            lock.lock();
            ++sent_;
            cv_.notify_all();
          }
        }) {}
  ~Sender() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;
  void send() {
    std::lock_guard<std::mutex> lock(mu_);
    ++asked_;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return sent_ == asked_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t asked_ = 0, sent_ = 0;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the fields it reads
};

// Bytes per second moved by `workers` connections each sending `bytes` and receiving
// `bytes` back, timed like ps_run: every buffer allocated and touched, every thread
// started and `warmup` untimed iterations done before the clock starts; then `iters`.
Rate raw_tcp(size_t bytes, int workers, int warmup, int iters) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::listen(listener, workers);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);

  std::vector<std::thread> servers;
  for (int w = 0; w < workers; ++w) {
    servers.emplace_back([&, listener] {
      std::vector<char> buf(bytes);  // zero-filled: touched before any timing
      const int fd = ::accept(listener, nullptr, nullptr);
      for (int i = 0; i < warmup + iters; ++i) {
        read_all(fd, buf.data(), bytes);
        write_all(fd, buf.data(), bytes);
      }
      ::close(fd);
    });
  }
  std::vector<int> fds;
  for (int w = 0; w < workers; ++w) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("connect");
    fds.push_back(fd);
  }
  Clock::time_point start;
  double cpu_start = 0;
  std::atomic<int> ready{0};
  std::vector<std::thread> clients;
  for (int w = 0; w < workers; ++w) {
    clients.emplace_back([&, w] {
      std::vector<char> out(bytes, 1), in(bytes);
      Sender sender(fds[w], out.data(), bytes);
      auto iteration = [&] {
        sender.send();
        read_all(fds[w], in.data(), bytes);
        sender.wait();
      };
      for (int i = 0; i < warmup; ++i) iteration();
      if (++ready == workers) {
        start = Clock::now();
        cpu_start = process_cpu_s();
      }
      while (ready < workers) std::this_thread::yield();
      for (int i = 0; i < iters; ++i) iteration();
    });
  }
  for (auto& t : clients) t.join();
  const double s = seconds_since(start);
  Rate r;
  r.cpu_ms_per_iter = 1e3 * (process_cpu_s() - cpu_start) / iters;
  for (auto& t : servers) t.join();
  for (int fd : fds) ::close(fd);
  ::close(listener);
  r.bytes_per_s = 2.0 * bytes * workers * iters / s;
  return r;
}

// ---- loom: ps::Server + ps::Worker ----------------------------------------------------

// ZeroMQ I/O threads per server process and per worker (VanOptions::io_threads), and
// whether a step is one Worker::push_pull or a push and a pull.
struct IoThreads {
  int server = 1, worker = 1;
  bool push_pull = true;
};

Rate ps_run(int64_t numel, int servers, int workers, int warmup, int iters, int64_t slice_bytes, IoThreads io) {
  std::vector<std::unique_ptr<loom::ps::Server>> srv;
  std::vector<std::thread> threads;
  std::vector<std::string> endpoints;
  for (int s = 0; s < servers; ++s) {
    loom::ps::ServerOptions o;
    o.server_index = s;
    o.num_workers = workers;
    o.optimizer.lr = 0;
    o.timeout = std::chrono::seconds(60);
    o.van.io_threads = io.server;
    srv.push_back(std::make_unique<loom::ps::Server>(o));
    endpoints.push_back(srv.back()->endpoint());
  }
  for (auto& s : srv) threads.emplace_back([&s] { s->run(); });

  const std::vector<loom::ps::TensorSpec> specs{{"w", {numel}, 4}};
  std::vector<std::unique_ptr<loom::ps::Worker>> clients;
  for (int w = 0; w < workers; ++w) {
    loom::ps::WorkerOptions o;
    o.servers = endpoints;
    o.worker_id = static_cast<uint32_t>(w);
    o.slice_bytes = slice_bytes;
    o.timeout = std::chrono::seconds(60);
    o.van.io_threads = io.worker;
    clients.push_back(std::make_unique<loom::ps::Worker>(specs, o));
  }
  std::vector<at::Tensor> params{torch::zeros({numel})};
  clients[0]->init(params);

  Clock::time_point start;
  double cpu_start = 0;
  std::vector<std::thread> loops;
  std::atomic<int> ready{0};
  for (int w = 0; w < workers; ++w) {
    loops.emplace_back([&, w] {
      std::vector<at::Tensor> mine{torch::zeros({numel})}, grads{torch::ones({numel})};
      clients[w]->wait(clients[w]->pull(mine, 0));
      auto iteration = [&](int i) {
        if (io.push_pull) {
          clients[w]->wait(clients[w]->push_pull(grads, mine, 1.0 / workers, i));
          return;
        }
        auto p = clients[w]->push(grads, 1.0 / workers, i);
        auto q = clients[w]->pull(mine, i + 1);
        clients[w]->wait(p);
        clients[w]->wait(q);
      };
      for (int i = 0; i < warmup; ++i) iteration(i);
      if (++ready == workers) {
        start = Clock::now();
        cpu_start = process_cpu_s();
      }
      while (ready < workers) std::this_thread::yield();
      for (int i = warmup; i < warmup + iters; ++i) iteration(i);
    });
  }
  for (auto& t : loops) t.join();
  const double s = seconds_since(start);
  Rate r;
  r.cpu_ms_per_iter = 1e3 * (process_cpu_s() - cpu_start) / iters;
  for (auto& c : clients) c->done();
  for (auto& t : threads) t.join();
  r.bytes_per_s = 2.0 * numel * 4 * workers * iters / s;
  r.ops_per_s = double(workers) * iters / s;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  loom::init_process();
  CLI::App app{"parameter-server goodput against raw loopback TCP"};
  int rounds = 5, warmup = 2, iters = 10, small_iters = 2000, threads = 1;
  app.add_option("--rounds", rounds);
  app.add_option("--warmup", warmup, "untimed push+pull iterations first, on both sides");
  app.add_option("--iters", iters, "push+pull iterations per measurement");
  app.add_option("--small-iters", small_iters);
  app.add_option("--threads", threads);
  std::vector<int64_t> sizes_mib{4, 64};
  std::vector<int> server_counts{1, 2};
  bool small = true;
  app.add_option("--mib", sizes_mib, "parameter sizes in MiB (default: 4 64)");
  app.add_option("--servers", server_counts, "server counts (default: 1 2)");
  bool peer = true;
  app.add_option("--tcp", peer, "also measure raw TCP (default 1; 0: loom only, e.g. under a profiler)");
  IoThreads io;
  int64_t slice_kib = 1024;  // loom train's --ps-slice-mb default (1)
  app.add_option("--slice-kib", slice_kib,
                 "largest slice of a parameter, KiB (WorkerOptions::slice_bytes; default 1024, as loom train)");
  app.add_option("--server-io-threads", io.server, "ZeroMQ I/O threads per server (default 1)");
  app.add_option("--worker-io-threads", io.worker, "ZeroMQ I/O threads per worker (default 1)");
  app.add_option("--push-pull", io.push_pull,
                 "1: a step is one Worker::push_pull (default); 0: a push and a pull, waited for both");
  app.add_option("--small", small, "also measure 1 KiB operations per second (default 1)");
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);
  loom::log::set_level(loom::log::Level::warn);  // the servers' start-up lines are noise here
  try {
    std::printf(
        "ps_goodput: 2 workers, push+pull per iteration, %d untimed + %d timed iterations on both sides, "
        "%d rounds, order alternating (GB/s = 1e9 bytes/s)\n",
        warmup, iters, rounds);
    std::printf("%8s %8s %6s %10s %10s %8s %14s %14s\n", "size", "servers", "round", "ps GB/s", "tcp GB/s", "ps/tcp",
                "ps cpu ms/it", "tcp cpu ms/it");
    for (int64_t mib : sizes_mib) {
      for (int servers : server_counts) {
        std::vector<double> ratios;
        const int64_t numel = mib * (1 << 20) / 4;
        for (int r = 0; r < rounds; ++r) {
          Rate ps, tcp;
          if (r % 2 == 0) {
            ps = ps_run(numel, servers, 2, warmup, iters, slice_kib << 10, io);
            if (peer) tcp = raw_tcp(size_t(numel) * 4, 2, warmup, iters);
          } else if (peer) {
            tcp = raw_tcp(size_t(numel) * 4, 2, warmup, iters);
            ps = ps_run(numel, servers, 2, warmup, iters, slice_kib << 10, io);
          } else {
            ps = ps_run(numel, servers, 2, warmup, iters, slice_kib << 10, io);
          }
          ratios.push_back(ps.bytes_per_s / tcp.bytes_per_s);
          std::printf("%5ldMiB %8d %6d %10.2f %10.2f %8.3f %14.2f %14.2f\n", long(mib), servers, r + 1,
                      ps.bytes_per_s / 1e9, tcp.bytes_per_s / 1e9, ratios.back(), ps.cpu_ms_per_iter,
                      tcp.cpu_ms_per_iter);
          std::fflush(stdout);
        }
        std::printf("median ps/tcp for %ld MiB, %d server(s): %.3f (range %.3f-%.3f, n=%d)\n", long(mib), servers,
                    median(ratios), *std::min_element(ratios.begin(), ratios.end()),
                    *std::max_element(ratios.begin(), ratios.end()), int(ratios.size()));
      }
    }
    if (!small) return 0;
    std::vector<double> ops, cpu_us;
    for (int r = 0; r < rounds; ++r) {
      const Rate small_rate = ps_run(256, 1, 2, warmup, small_iters, int64_t{4} << 20, io);
      ops.push_back(small_rate.ops_per_s);
      cpu_us.push_back(1e3 * small_rate.cpu_ms_per_iter);
      std::printf("small round %d: %.0f ops/s, %.0f us CPU per iteration (2 ops)\n", r + 1, ops.back(), cpu_us.back());
    }
    std::printf(
        "small messages (1 KiB key, 2 workers, 1 server, sync): median %.0f push+pull ops/s (range %.0f-%.0f)\n",
        median(ops), *std::min_element(ops.begin(), ops.end()), *std::max_element(ops.begin(), ops.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ps_goodput: %s\n", e.what());
    return 1;
  }
  return 0;
}
