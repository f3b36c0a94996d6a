// PsStrategy (`--strategy ps`): data parallelism through parameter servers.
//
// Every worker holds a full model replica. Each step it computes gradients on its part
// of the global batch, pushes them (weighted by its share) to the servers that own each
// slice, and pulls the updated parameters for the next step; the optimizer runs on the
// servers (server.h). Worker 0 gives the servers their initial values; all workers then
// pull them, so every replica starts from the same point.
//
// With --consistency sync the run computes what `--strategy single` computes. With
// async / ssp each worker trains on whatever the servers hold when it pulls, and the
// workers share no collective during training: logged losses are each worker's own,
// and --time-limit is decided per worker.
//
// The servers are separate processes (ps/server_process.h) that find the workers, and
// are found by them, through the rendezvous store: key "loom/ps/server/<i>" holds
// server i's endpoint.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>

#include "loom/ps/server.h"
#include "loom/ps/worker.h"
#include "loom/train/strategy.h"

namespace loom::ps {

class PsStrategy : public train::Strategy {
 public:
  std::string name() const override { return "ps"; }
  void setup(const train::StrategySetup& setup) override;
  train::DataSlot data_slot() const override;
  train::StepOutput step(const data::Batch& batch, const train::StepInfo& info) override;
  double sum_over_data_ranks(double value) override;
  std::vector<double> gather_over_data_ranks(double value) override;
  torch::nn::Sequential final_model() override;
  void finish() override;

 // The workers' model copies; the servers' shards and optimizers are saved through
  // checkpoint_services() (worker 0 asks every server) and loaded by the servers.
  train::LocalState local_state() override {
    return {model_.ptr().get(), nullptr, false, "", consistency_ != Consistency::sync};
  }
  void checkpoint_services(const std::string& step_dir) override;

 private:
  torch::nn::Sequential model_{nullptr};
  std::shared_ptr<comm::Context> context_;
  std::unique_ptr<Worker> worker_;
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> grads_;  // zeros for parameters without a gradient (reused)
  train::Tracer* tracer_ = nullptr;
  Consistency consistency_ = Consistency::sync;
  std::string save_name_;  // --ps-save's last part: the name the servers save under
  double slowdown_ = 1.0;
  int64_t steps_ = 0;
  double last_share_ = 0;
};

// The key under which server `index` announces its endpoint in the rendezvous store.
std::string server_store_key(int index);

}  // namespace loom::ps
