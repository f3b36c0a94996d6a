#include "loom/ps/consistency.h"

#include <ATen/ATen.h>
#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "loom/core/choice.h"
#include "loom/core/error.h"

namespace loom::ps {

namespace {
constexpr Choice<Consistency> kConsistencies[] = {
    {"sync", Consistency::sync}, {"async", Consistency::async}, {"ssp", Consistency::ssp}};
}  // namespace

Consistency parse_consistency(const std::string& name) { return parse_choice("consistency", name, kConsistencies); }

std::string consistency_name(Consistency c) { return choice_name(c, kConsistencies); }

namespace {

using Clock = std::chrono::steady_clock;

class SyncRule final : public ConsistencyRule {
 public:
  explicit SyncRule(const ConsistencyOptions& o) : options_(o) {}

  std::string describe() const override { return "sync mode"; }

  void add_key(uint64_t key, const Slot&) override {
    Step& s = steps_[key];
    const size_t n = static_cast<size_t>(options_.num_workers);
    s.grads.resize(n);
    s.weights.assign(n, 0);
    s.pushed.assign(n, 0);
  }

  PushResult push(uint64_t key, Slot& slot, uint32_t worker, int64_t clock, double weight, at::Tensor grad) override {
    if (clock != slot.version) {
      return {
          fmt::format("key {}: push for step {} while the server is at step {} (sync mode)", key, clock, slot.version)};
    }
    Step& s = steps_.at(key);
    if (s.pushed[worker]) return {fmt::format("key {}: worker {} pushed step {} twice", key, worker, clock)};
    s.grads[worker] = std::move(grad);  // kept as it arrived (no copy when aligned) until it is summed
    s.weights[worker] = weight;
    s.pushed[worker] = 1;
    if (s.count++ == 0) {
      s.first_push = options_.clock();
      s.step = slot.version;
    }
    // Worker order, whatever order the pushes came in (deterministic sums), but each push
    // as soon as all lower workers' are in: the sum of the early pushes is done while
    // the server waits for the last one, not after it.
    while (s.summed < s.grads.size() && s.pushed[s.summed]) {
      const size_t w = s.summed++;
      if (w == 0) {
        at::mul_out(slot.combined, s.grads[0], s.weights[0]);
      } else {
        slot.combined.add_(s.grads[w], s.weights[w]);
      }
      s.grads[w].reset();  // give the received message back
    }
    if (s.count < options_.num_workers) return {};
    std::fill(s.pushed.begin(), s.pushed.end(), 0);
    s.count = 0;
    s.summed = 0;
    return {"", true};
  }

  bool ack_before_update() const override { return true; }

  bool ready(uint64_t, const Slot& slot, int64_t clock, const Liveness&) const override {
    return slot.version >= clock;
  }

  bool values_stable_while_sent() const override { return true; }
  bool drops_silent_workers() const override { return false; }

  void check_progress() const override {
    const auto now = options_.clock();
    for (const auto& [key, s] : steps_) {
      if (s.count == 0 || now - s.first_push <= options_.step_timeout) continue;
      std::string missing;
      for (size_t w = 0; w < s.pushed.size(); ++w) {
        if (!s.pushed[w]) missing += (missing.empty() ? "" : ", ") + std::to_string(w);
      }
      LOOM_THROW(CommError, "{}: step {} of key {}: no push from worker {} within {} s (sync mode)", options_.who,
                 s.step, key, missing, options_.step_timeout.count() / 1000.0);
    }
  }

 private:
  // One key's current step: its pushes so far, per worker (views of the received messages).
  struct Step {
    std::vector<at::Tensor> grads;
    std::vector<double> weights;
    std::vector<uint8_t> pushed;
    size_t summed = 0;  // workers 0..summed-1 are in slot.combined
    int count = 0;
    int64_t step = 0;
    Clock::time_point first_push;
  };
  ConsistencyOptions options_;
  std::unordered_map<uint64_t, Step> steps_;
};

// Async, and ssp with `bounded` set: every push is its own update.
class AsyncRule : public ConsistencyRule {
 public:
  explicit AsyncRule(const ConsistencyOptions& o) : options_(o) {}

  std::string describe() const override { return "async mode"; }
  void add_key(uint64_t, const Slot&) override {}

  PushResult push(uint64_t key, Slot& slot, uint32_t worker, int64_t clock, double weight, at::Tensor grad) override {
    at::mul_out(slot.combined, grad, weight);
    pushed(key, worker, clock);
    return {"", true};
  }

  bool ack_before_update() const override { return false; }
  bool ready(uint64_t, const Slot&, int64_t, const Liveness&) const override { return true; }
  bool values_stable_while_sent() const override { return false; }
  bool drops_silent_workers() const override { return true; }
  void check_progress() const override {}

 protected:
  virtual void pushed(uint64_t /*key*/, uint32_t /*worker*/, int64_t /*clock*/) {}
  ConsistencyOptions options_;
};

class SspRule final : public AsyncRule {
 public:
  using AsyncRule::AsyncRule;

  std::string describe() const override { return fmt::format("ssp mode, staleness {}", options_.staleness); }

  void add_key(uint64_t key, const Slot&) override { steps_done_[key].assign(options_.num_workers, 0); }

  bool ready(uint64_t key, const Slot&, int64_t clock, const Liveness& workers) const override {
    const std::vector<int64_t>& done = steps_done_.at(key);
    for (size_t w = 0; w < done.size(); ++w) {
      // Workers that are done or dropped no longer hold anyone back.
      if (workers.counted(w) && done[w] < clock - options_.staleness) return false;
    }
    return true;
  }

 private:
  void pushed(uint64_t key, uint32_t worker, int64_t clock) override {
    int64_t& done = steps_done_.at(key)[worker];
    done = std::max(done, clock + 1);
  }
  std::unordered_map<uint64_t, std::vector<int64_t>> steps_done_;  // per key: pushes from each worker
};

}  // namespace

std::unique_ptr<ConsistencyRule> make_consistency_rule(const ConsistencyOptions& options) {
  LOOM_CHECK(options.staleness >= 0, ConfigError, "--staleness must be >= 0, got {}", options.staleness);
  ConsistencyOptions o = options;
  if (!o.clock) o.clock = Clock::now;
  switch (o.mode) {
    case Consistency::sync: return std::make_unique<SyncRule>(o);
    case Consistency::async: return std::make_unique<AsyncRule>(o);
    case Consistency::ssp: return std::make_unique<SspRule>(o);
  }
  LOOM_THROW(ConfigError, "unknown consistency mode {}", static_cast<int>(o.mode));
}

}  // namespace loom::ps
