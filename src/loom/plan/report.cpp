#include "loom/plan/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

namespace loom::plan {

std::vector<std::string> train_args(const RankedPlan& plan, const Job& job, const std::vector<std::string>& base) {
  std::vector<std::string> a = base;
  for (auto& s : plan.plan.args(job)) a.push_back(std::move(s));
  a.emplace_back("--predicted-samples-per-s");
  a.push_back(fmt::format("{:.1f}", plan.prediction.samples_per_s));
  return a;
}

namespace {

std::string mib(int64_t bytes) { return fmt::format("{:.0f}", static_cast<double>(bytes) / (1024.0 * 1024.0)); }

}  // namespace

std::string table(const std::vector<RankedPlan>& plans, const Job& job, const ModelProfile& profile,
                  const Cluster& cluster, size_t rows) {
  std::string out = fmt::format(
      "{} ({} parameters), global batch {}, {} thread(s) per process, up to {} process(es) on {}\n", profile.model,
      profile.param_count(), job.batch_size, job.threads, std::min(job.max_processes, cluster.max_processes()),
      cluster.name.empty() ? "this machine" : cluster.name);
  size_t unfit = 0;
  for (const auto& p : plans) unfit += p.prediction.fits ? 0 : 1;
  out +=
      fmt::format("{} plans, {} do not fit memory; the best {}:\n", plans.size(), unfit, std::min(rows, plans.size()));
  out += fmt::format("{:>4}  {:<10} {:<34} {:>10} {:>9} {:>9} {:>5}  {}\n", "rank", "strategy", "degrees", "samples/s",
                     "step ms", "MiB/proc", "fits", "dominant");
  for (size_t i = 0; i < plans.size() && i < rows; ++i) {
    const auto& r = plans[i];
    out += fmt::format("{:>4}  {:<10} {:<34} {:>10.1f} {:>9.2f} {:>9} {:>5}  {}{}\n", i + 1, r.plan.strategy,
                       r.plan.degrees(), r.prediction.samples_per_s, 1e3 * r.prediction.step_s,
                       mib(r.prediction.memory_bytes), r.prediction.fits ? "yes" : "NO", r.prediction.dominant,
                       r.prediction.note.empty() ? "" : " [" + r.prediction.note + "]");
  }
  return out;
}

std::string to_json(const std::vector<RankedPlan>& plans, const Job& job, const BaseArgs& base) {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& r : plans) {
    const Plan& p = r.plan;
    nlohmann::json degrees{{"processes", p.processes()}};
    if (p.strategy == "allreduce") {
      degrees["workers"] = p.workers;
      degrees["zero"] = p.zero;
    } else if (p.strategy == "ps") {
      degrees["workers"] = p.workers;
      degrees["servers"] = p.servers;
      degrees["consistency"] = p.consistency;
    } else if (p.strategy == "pipeline" || p.strategy == "hybrid") {
      if (p.strategy == "hybrid") degrees["dp"] = p.workers;
      degrees["stages"] = p.stages;
      degrees["micro_batches"] = p.micro_batches;
      degrees["schedule"] = p.schedule;
      degrees["split"] = p.split;
    }
    nlohmann::json o{
        {"strategy", p.strategy},
        {"degrees", degrees},
        {"processes", p.processes()},
        {"args", train_args(r, job, base.count(p.strategy) ? base.at(p.strategy) : BaseArgs::mapped_type{})},
        {"predicted_samples_per_s", r.prediction.samples_per_s},
        {"predicted_step_s", r.prediction.step_s},
        {"predicted_memory_bytes", r.prediction.memory_bytes},
        {"fits", r.prediction.fits},
        {"dominant", r.prediction.dominant},
        {"compute_s", r.prediction.compute_s},
        {"communication_s", r.prediction.communication_s},
        {"bubble_s", r.prediction.bubble_s},
        {"server_s", r.prediction.server_s},
        {"slowdown", r.prediction.slowdown}};
    if (!r.prediction.note.empty()) o["note"] = r.prediction.note;
    arr.push_back(std::move(o));
  }
  return arr.dump(1);
}

std::string shell_join(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || std::string("-_.,/=:+@%").find(ch) != std::string::npos;
    });
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char ch : a) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
      out += '\'';
    }
  }
  return out;
}

}  // namespace loom::plan
