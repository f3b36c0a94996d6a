// bench_single: loom's single-process training against a plain hand-written libtorch loop
// over the same model, batches and thread count, and the malloc tuning on against off.
//
//   bench_single [--rounds 5] [--steps 150] [--model cnn] [--batch-size 64] [--threads 1]
//
// Each measurement runs in its own process (malloc settings are process-wide); the
// driver alternates A and B runs and prints the median of the per-round ratios.
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "loom/core/log.h"
#include "loom/core/process.h"
#include "loom/data/permutation.h"
#include "loom/data/registry.h"
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

// The plain loop a libtorch user would write: the same permutation, index_select,
// forward, cross-entropy, backward, SGD with momentum.
double plain_loop(const Args& a) {
  at::set_num_threads(a.threads);
  loom::data::DataOptions d;
  d.name = a.data;
  const auto train = loom::data::load_dataset(d, loom::data::Split::train);
  loom::models::ModelOptions mo;
  mo.sample_shape = train.sample_shape;
  auto model = loom::models::make_model(a.model, mo);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  const auto perm = torch::tensor(loom::data::epoch_permutation(train.size(), 0, 0), torch::kInt64);
  std::chrono::steady_clock::time_point start;
  for (int64_t t = 0; t < a.warmup + a.steps; ++t) {
    if (t == 0) start = std::chrono::steady_clock::now();
    const auto idx = perm.narrow(0, (t * a.batch) % (train.size() - a.batch), a.batch);
    const auto x = train.inputs.index_select(0, idx), y = train.targets.index_select(0, idx);
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(x), y);
    loss.backward();
    opt.step();
    (void)loss.item<double>();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return (a.warmup + a.steps) * a.batch / s;  // timed like loom's summary: every step
}

double loom_loop(const Args& a) {
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
  // samples_per_s of the summary times every step (data gather included), like the plain loop.
  return loom::train::Trainer(c, nullptr).run().samples_per_s;
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

  if (a.role != "driver") {
    loom::init_process();  // honours LOOM_MALLOC_TUNING=0 for the "off" runs
    loom::log::set_level(loom::log::Level::error);
    const double sps = a.role == "plain" ? plain_loop(a) : loom_loop(a);
    std::printf("{\"samples_per_s\": %.3f}\n", sps);
    return 0;
  }

  std::printf("bench_single: model %s, data %s, batch %lld, %d thread(s), %lld steps, %d rounds\n", a.model.c_str(),
              a.data.c_str(), static_cast<long long>(a.batch), a.threads, static_cast<long long>(a.steps), a.rounds);
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
  std::printf("median loom/plain: %.3f   median malloc tuned/untuned (plain loop): %.3f\n", median(ratio),
              median(tuning));
  return 0;
}
