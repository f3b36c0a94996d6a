// Data parallelism in your own loop: your module, your data, your optimizer, and
// loom::dp::DistributedDataParallel averaging the gradients across processes.
//
//   ddp_loop OUT                           one process, the whole batch: writes OUT0.pt
//   loom run --nproc 2 -- ddp_loop OUT     two processes: each writes OUT<rank>.pt
//   ddp_loop --compare A.pt B.pt [TOL]     exit 0 when A and B agree within TOL (1e-5)
//
// Every step takes one global batch of 32 samples; rank 0 trains on 3/4 of it, each other
// rank on an equal part of the rest. Weighting each rank's gradient by its share makes
// the sum the gradient of the whole batch, so the N-process run computes what one
// process computes on the whole batch.
#include <loom/comm/context.h>
#include <loom/core/dist_env.h>
#include <loom/core/error.h>
#include <loom/dp/distributed_data_parallel.h>
#include <torch/torch.h>

#include <iostream>

#include "../common/tensor_files.h"

// A model that is not a Sequential: two inputs, a branch for each, one head.
struct TwoTowerImpl : torch::nn::Module {
  TwoTowerImpl()
      : left(register_module("left", torch::nn::Linear(8, 16))),
        right(register_module("right", torch::nn::Linear(4, 16))),
        head(register_module("head", torch::nn::Linear(16, 1))) {}
  torch::Tensor forward(const torch::Tensor& a, const torch::Tensor& b) {
    return head(torch::tanh(left(a)) + torch::tanh(right(b)));
  }
  torch::nn::Linear left, right, head;
};
TORCH_MODULE(TwoTower);

int main(int argc, char** argv) try {
  if (argc >= 4 && std::string(argv[1]) == "--compare") return examples::compare_main(argc, argv);
  if (argc != 2) throw loom::ConfigError("usage: ddp_loop OUT | ddp_loop --compare A B [TOLERANCE]");
  at::set_num_threads(1);

  // Who am I? RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from `loom run` (or torchrun,
  // srun, mpirun); without them, rank 0 of 1. create() meets the other ranks.
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(60);  // every collective fails after this, naming the peer
  auto ctx = loom::comm::Context::create(loom::DistEnv::from_environment(), options);
  const int rank = ctx->rank(), world = ctx->world_size();

  // The same data in every process: generated from a fixed seed.
  torch::manual_seed(1);
  const int64_t samples = 512, batch = 32;
  const auto a = torch::randn({samples, 8}), b = torch::randn({samples, 4});
  const auto y = (0.5 * a.narrow(1, 0, 4).sum(1, true)).tanh() + 0.5 * b.narrow(1, 0, 1) * b.narrow(1, 1, 1);

  torch::manual_seed(0);  // DDP broadcasts rank 0's parameters anyway
  TwoTower model;
  loom::dp::DistributedDataParallel ddp(model, ctx->world());  // collective: checks the replicas
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  // This rank's rows of every global batch: rank 0 takes 3 parts, every other rank 1.
  const int64_t parts = 3 + (world - 1);
  auto first_row = [&](int r) { return r == 0 ? 0 : batch * (3 + r - 1) / parts; };
  const int64_t begin = first_row(rank), rows = first_row(rank + 1) - begin;
  ddp.set_weight(double(rows) / batch);  // this rank's share of the global batch

  for (int epoch = 0; epoch < 3; ++epoch) {
    double loss_sum = 0;
    for (int64_t start = 0; start + batch <= samples; start += batch) {
      const int64_t from = start + begin;
      optimizer.zero_grad();
      auto out = model->forward(a.narrow(0, from, rows), b.narrow(0, from, rows));
      auto loss = torch::mse_loss(out, y.narrow(0, from, rows));  // mean over this rank's rows
      loss.backward();                                            // gradient buckets are allreduced while backward runs
      ddp.finish();  // waits: every param.grad now holds the whole batch's gradient
      optimizer.step();
      loss_sum += loss.item<double>() * rows / batch;  // this rank's part of the batch's loss
    }
    const double mean = ctx->world().allreduce_sum(loss_sum) / (samples / batch);  // over all ranks
    if (rank == 0) std::cout << "epoch " << epoch << " loss " << mean << std::endl;
  }
  // The replicas are identical, so one rank would save; each writes its own for the test.
  examples::save_parameters(*model, argv[1] + std::to_string(rank) + ".pt");
  return 0;
} catch (const std::exception& e) {  // loom's errors name the peer, flag or file at fault
  std::cerr << "ddp_loop: " << e.what() << std::endl;
  return 1;
}
