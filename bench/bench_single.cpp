// bench_single: loom's single-process training against a plain hand-written libtorch loop
// over the same model, batches and thread count, and the malloc tuning on against off.
//
//   bench_single [--rounds 5] [--warmup 10] [--steps 150] [--model cnn] [--batch-size 64] [--threads 1]
//
// Both loops run --warmup untimed steps, then are timed the same way: wall clock over the
// next --steps steps, from the end of the last warm-up step to the end of the last step
// (each step ends with the loss read back). The plain loop reads the clock itself; loom's
// Trainer writes a metrics record after step --warmup and after its last step
// (log_every = --warmup) into a FIFO that a thread of this program reads, noting when
// each record arrives. Both set their threads alike: intra-op threads = --threads,
// OpenBLAS's own pool = --threads (loom::set_blas_threads), 1 inter-op thread.
//
// Each measurement runs in its own process (malloc settings are process-wide); the
// driver alternates the order of the runs each round and prints the median and range of
// the per-round ratios.
#include <torch/torch.h>
#include <CLI/CLI.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "loom/core/dist_env.h"
#include "loom/core/log.h"
#include "loom/data/dataset.h"
#include "loom/data/partitioner.h"
#include "loom/launch/self_executable.h"
#include "loom/models/registry.h"
#include "loom/train/trainer.h"

namespace {

struct Args {
  std::string role = "driver";  // driver | loom | plain
  int rounds = 5;
  int64_t steps = 150;
  int64_t warmup = 10;
  std::string model = "cnn";
  std::string data = "fashion-mnist";
  int64_t batch = 64;
  int threads = 1;
};

using Clock = std::chrono::steady_clock;

// Threads as the trainer sets them (train/trainer.cpp): intra-op, OpenBLAS's own pool, 1 inter-op.
void set_threads(int threads) {
  at::set_num_threads(threads);
  loom::set_blas_threads(threads);
  at::set_num_interop_threads(1);
}

// The plain loop a libtorch user would write: the same permutation, index_select,
// forward, cross-entropy, backward, SGD with momentum.
double plain_loop(const Args& a) {
  set_threads(a.threads);
  loom::data::DataOptions d;
  d.name = a.data;
  const auto train = loom::data::load_dataset(d, loom::data::Split::train);
  loom::models::ModelOptions mo;
  mo.sample_shape = train.sample_shape;
  auto model = loom::models::make_model(a.model, mo);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto perm = torch::tensor(loom::data::epoch_permutation(train.size(), 0, 0), torch::kInt64);
  Clock::time_point start;
  for (int64_t t = 0; t < a.warmup + a.steps; ++t) {
    if (t == a.warmup) start = Clock::now();  // the end of the last warm-up step
    const auto idx = perm.narrow(0, (t * a.batch) % (train.size() - a.batch), a.batch);
    const auto x = train.inputs.index_select(0, idx), y = train.targets.index_select(0, idx);
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    (void)loss.item<double>();
  }
  const double s = std::chrono::duration<double>(Clock::now() - start).count();
  return a.steps * a.batch / s;
}

// loom's Trainer, timed by wall clock between the metrics records of step --warmup and of
// the last step, as they arrive through a FIFO. The Trainer writes `metrics + ".partial"`
// (renamed at the end), so that is the FIFO's name.
double loom_loop(const Args& a) {
  char dir_template[] = "/tmp/bench_single.XXXXXX";
  const char* dir = mkdtemp(dir_template);
  if (!dir) throw std::runtime_error("mkdtemp failed");
  const std::string metrics = std::string(dir) + "/m.jsonl";
  if (mkfifo((metrics + ".partial").c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
  std::map<int64_t, Clock::time_point> arrivals;
  std::thread reader([&] {
    std::ifstream in(metrics + ".partial");  // blocks until the Trainer opens it
    std::string line;
    while (std::getline(in, line)) {
      const auto now = Clock::now();
      const auto j = nlohmann::json::parse(line);
      if (j.value("event", "") == "step") arrivals[j["step"].get<int64_t>()] = now;
    }
  });
  loom::train::TrainConfig c;
  c.model = a.model;
  c.data = a.data;
  c.batch_size = a.batch;
  c.threads = a.threads;
  c.lr = 0.05;
  c.momentum = 0.9;
  c.steps = a.warmup + a.steps;
  c.eval = false;
  c.progress = "off";
  c.metrics = metrics;
  c.log_every = a.warmup;
  loom::train::Trainer(c, nullptr).run();  // sets the threads like set_threads()
  reader.join();
  std::remove(metrics.c_str());
  rmdir(dir);
  const auto first = arrivals.find(a.warmup), last = arrivals.find(a.warmup + a.steps);
  if (first == arrivals.end() || last == arrivals.end())
    throw std::runtime_error("loom wrote no record of those steps");
  return a.steps * a.batch / std::chrono::duration<double>(last->second - first->second).count();
}

double run_child(const Args& a, const std::string& role, bool malloc_tuning) {
  const std::string cmd = std::string(malloc_tuning ? "" : "LOOM_MALLOC_TUNING=0 ") + loom::launch::self_executable() +
                          " --role " + role + " --steps " + std::to_string(a.steps) + " --warmup " +
                          std::to_string(a.warmup) + " --model " + a.model + " --data " + a.data + " --batch-size " +
                          std::to_string(a.batch) + " --threads " + std::to_string(a.threads);
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  std::string out;
  char buf[256];
  while (fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) throw std::runtime_error("child failed: " + cmd + "\n" + out);
  return nlohmann::json::parse(out)["samples_per_s"].get<double>();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"loom single-process training vs a plain libtorch loop"};
  app.add_option("--role", a.role);
  app.add_option("--rounds", a.rounds);
  app.add_option("--steps", a.steps);
  app.add_option("--warmup", a.warmup);
  app.add_option("--model", a.model);
  app.add_option("--data", a.data);
  app.add_option("--batch-size", a.batch);
  app.add_option("--threads", a.threads);
  CLI11_PARSE(app, argc, argv);
  if (a.warmup < 1) {
    std::fprintf(stderr, "bench_single: --warmup must be at least 1\n");
    return 2;
  }

  if (a.role != "driver") {
    loom::init_process();  // honours LOOM_MALLOC_TUNING=0 for the "off" runs
    loom::log::set_level(loom::log::Level::error);
    const double sps = a.role == "plain" ? plain_loop(a) : loom_loop(a);
    std::printf("{\"samples_per_s\": %.3f}\n", sps);
    return 0;
  }

  std::printf(
      "bench_single: model %s, data %s, batch %lld, %d thread(s) (intra-op and OpenBLAS; 1 inter-op) on both sides, "
      "%lld warm-up + %lld timed steps (wall clock), %d rounds, order alternating\n",
      a.model.c_str(), a.data.c_str(), static_cast<long long>(a.batch), a.threads, static_cast<long long>(a.warmup),
      static_cast<long long>(a.steps), a.rounds);
  std::printf("%5s %14s %14s %14s %10s %10s\n", "round", "loom s/s", "plain s/s", "plain-untuned", "loom/plain",
              "tuned/off");
  std::vector<double> ratio, tuning;
  for (int r = 0; r < a.rounds; ++r) {
    // Alternate the order each round so drift on a shared machine hits both sides.
    double l, p, u;
    if (r % 2 == 0) {
      l = run_child(a, "loom", true);
      p = run_child(a, "plain", true);
      u = run_child(a, "plain", false);
    } else {
      u = run_child(a, "plain", false);
      p = run_child(a, "plain", true);
      l = run_child(a, "loom", true);
    }
    ratio.push_back(l / p);
    tuning.push_back(p / u);
    std::printf("%5d %14.1f %14.1f %14.1f %10.3f %10.3f\n", r + 1, l, p, u, l / p, p / u);
    std::fflush(stdout);
  }
  auto range = [](const std::vector<double>& v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f-%.3f", *std::min_element(v.begin(), v.end()),
                  *std::max_element(v.begin(), v.end()));
    return std::string(buf);
  };
  std::printf("median loom/plain: %.3f (range %s)   median malloc tuned/untuned (plain loop): %.3f (range %s), n=%d\n",
              median(ratio), range(ratio).c_str(), median(tuning), range(tuning).c_str(), a.rounds);
  return 0;
}
