// A parameter server in your own loop: the servers hold the parameters and the optimizer;
// each worker computes gradients on its part of the batch, pushes them, and pulls the
// updated parameters back through loom::ps::Worker.
//
//   loom ps-server --index I --workers 2 --servers 2 --master-port P --lr 0.05 --momentum 0.9
//                                          (I = 0, 1: two servers, each its own process)
//   loom run --nproc 2 --master-port P -- ps_loop 2 OUT    two workers: each writes OUT<rank>.pt
//   ps_loop 0 OUT                          no server: a local optimizer, the reference
//   ps_loop --compare A.pt B.pt [TOL]      exit 0 when A and B agree within TOL (1e-5)
//
// The servers run in sync mode (their default): a step's update waits for every worker's
// push and applies the share-weighted sum once, so the workers compute what one process
// with torch::optim::SGD(0.05, momentum 0.9) computes on the whole batch.
#include <loom/comm/context.h>
#include <loom/core/dist_env.h>
#include <loom/ps/job_layout.h>
#include <loom/ps/worker.h>
#include <torch/torch.h>

#include <iostream>
#include <optional>

#include "../common/tensor_files.h"

int main(int argc, char** argv) try {
  if (argc >= 4 && std::string(argv[1]) == "--compare") return examples::compare_main(argc, argv);
  if (argc != 3) throw std::invalid_argument("usage: ps_loop SERVERS OUT | ps_loop --compare A B [TOLERANCE]");
  const int servers = std::stoi(argv[1]);
  at::set_num_threads(1);

  // The workers' job: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from `loom run`. Worker 0
  // hosts the rendezvous store, where each server announces its address.
  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(60);
  auto ctx = loom::comm::Context::create(loom::DistEnv::from_environment(), options);
  const int rank = ctx->rank(), world = ctx->world_size();

  torch::manual_seed(1);  // the same data in every process; each worker takes batch / world rows
  const int64_t samples = 512, batch = 32, rows = batch / world, begin = rank * rows;
  const auto x = torch::randn({samples, 10});
  const auto y = x.narrow(1, 0, 5).sum(1, true).tanh() - x.narrow(1, 5, 5).pow(2).mean(1, true);

  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(10, 32), torch::nn::Tanh(), torch::nn::Linear(32, 1));
  std::vector<torch::Tensor> params = model->parameters();

  // The servers' view of the model: a name and a shape per tensor (float32).
  std::vector<loom::ps::TensorSpec> specs;
  for (const auto& p : model->named_parameters()) specs.push_back({p.key(), p.value().sizes().vec()});
  loom::ps::WorkerOptions wo;
  wo.worker_id = rank;
  wo.timeout = options.timeout;  // a silent server: TimeoutError naming it
  for (int i = 0; i < servers; ++i) wo.servers.push_back(ctx->store_get(loom::ps::server_store_key(i)));

  std::optional<loom::ps::Worker> ps;
  std::optional<torch::optim::SGD> local;  // only for the reference run
  if (servers > 0) {
    ps.emplace(specs, wo);            // connects to every server
    if (rank == 0) ps->init(params);  // the initial values, once
    ctx->world().barrier().wait();    // ... before anyone pulls them
    ps->wait(ps->pull(params, 0));
  } else {
    local.emplace(params, torch::optim::SGDOptions(0.05).momentum(0.9));
  }

  int64_t step = 0;
  for (int epoch = 0; epoch < 3; ++epoch) {
    double loss_sum = 0;
    for (int64_t start = 0; start + batch <= samples; start += batch, ++step) {
      model->zero_grad();
      auto loss = torch::mse_loss(model->forward(x.narrow(0, start + begin, rows)), y.narrow(0, start + begin, rows));
      loss.backward();
      loss_sum += loss.item<double>();
      if (!ps) {
        local->step();
        continue;
      }
      std::vector<torch::Tensor> grads;
      for (const auto& p : params) grads.push_back(p.grad());
      auto pushed = ps->push(grads, double(rows) / batch, step);  // weighted by this worker's share
      auto pulled = ps->pull(params, step + 1);                   // answered once every worker's step is applied
      ps->wait(pushed);
      ps->wait(pulled);
    }
    const double mean = ctx->world().allreduce_sum(loss_sum * rows / batch) / (samples / batch);  // all workers'
    if (rank == 0) std::cout << "epoch " << epoch << " loss " << mean << std::endl;
  }
  if (ps) ps->done();  // the servers exit once every worker is done
  // Every worker holds the servers' values; each writes its own for the test to compare.
  examples::save_parameters(*model, argv[2] + std::to_string(rank) + ".pt");
  return 0;
} catch (const std::exception& e) {  // loom's errors name the server, peer or flag at fault
  std::cerr << "ps_loop: " << e.what() << std::endl;
  return 1;
}
