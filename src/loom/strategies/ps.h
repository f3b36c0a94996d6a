// PsStrategy (`--strategy ps`): data parallelism through parameter servers.
//
// Every worker holds a full model replica. Each step it computes gradients on its part
// of the global batch, pushes them (weighted by its share) to the servers that own each
// slice, and pulls the updated parameters for the next step; the optimizer runs on the
// servers (ps/server.h). Worker 0 gives the servers their initial values; all workers
// then pull them, so every replica starts from the same point.
//
// With Consistency::sync the run computes what `--strategy single` computes. With
// async / ssp each worker trains on whatever the servers hold when it pulls, and the
// workers share no collective during training: logged losses are each worker's own,
// and --time-limit is decided per worker.
//
// The servers are separate processes (train/ps_server_process.h, or `loom ps-server`)
// found through the rendezvous store (ps/job_layout.h).
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/ps/worker.h"
#include "loom/strategies/options.h"
#include "loom/strategies/strategy.h"

namespace loom::strategies {

class PsStrategy : public Strategy {
 public:
  PsStrategy(PsOptions options, StepOptions step) : options_(std::move(options)), step_(step) {}
  std::string name() const override { return "ps"; }
  void setup(const StrategySetup& setup) override;
  DataSlot data_slot() const override;
  StepOutput step(const data::Batch& batch, const StepInfo& info) override;
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  void finish() override;

  // The workers' model copies; the servers' shards and optimizers are saved through
  // checkpoint_services() (worker 0 asks every server) and loaded by the servers.
  LocalState local_state() override {
    return {model_.ptr().get(), nullptr, false, "", options_.consistency != ps::Consistency::sync};
  }
  void checkpoint_services(const std::string& step_dir) override;

 private:
  PsOptions options_;
  StepOptions step_;
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<ps::Worker> worker_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> grads_;  // zeros for parameters without a gradient (reused)
  trace::Tracer* tracer_ = nullptr;
  double last_share_ = 0;
};

}  // namespace loom::strategies
