// Pipeline parallelism in your own loop: your torch::nn::Sequential cut into one stage per
// process; each global batch cut into micro-batches that flow through the stages on the
// 1F1B schedule (activations forward, their gradients backward).
//
//   pipeline_loop OUT                          one process, no pipeline (the reference): writes OUT.pt
//   loom run --nproc 2 -- pipeline_loop OUT    two stages; rank 0 writes the whole model
//   pipeline_loop --compare A.pt B.pt [TOL]    exit 0 when A and B agree within TOL (1e-5)
//
// Each micro-batch's loss is scaled by its share of the batch, so after a step each
// stage's gradients are the whole batch's: the pipeline computes what one process does.
#include <loom/comm/context.h>
#include <loom/core/dist_env.h>
#include <loom/pipeline/pipeline_stage.h>
#include <torch/torch.h>

#include <iostream>

#include "../common/tensor_files.h"

int main(int argc, char** argv) try {
  if (argc >= 4 && std::string(argv[1]) == "--compare") return examples::compare_main(argc, argv);
  if (argc != 2) throw std::invalid_argument("usage: pipeline_loop OUT | pipeline_loop --compare A B [TOLERANCE]");
  at::set_num_threads(1);

  loom::comm::ContextOptions options;
  options.timeout = std::chrono::seconds(60);  // a dead neighbour: an error naming its rank
  auto ctx = loom::comm::Context::create(loom::DistEnv::from_environment(), options);
  const int stage = ctx->rank(), stages = ctx->world_size();  // stage s = rank s

  torch::manual_seed(1);  // every stage reads the same data: inputs on the first, targets on the last
  const int64_t samples = 512, batch = 32;
  const auto x = torch::randn({samples, 12});
  const auto y = (x.narrow(1, 0, 6).sum(1) > x.narrow(1, 6, 6).sum(1)).to(torch::kLong);  // 2 classes

  // The whole model, built the same way in every process (same seed, same parameters).
  torch::manual_seed(0);
  torch::nn::Sequential model(torch::nn::Linear(12, 32), torch::nn::Tanh(), torch::nn::Linear(32, 32),
                              torch::nn::Tanh(), torch::nn::Linear(32, 2));

  // Cut its 5 layers into `stages` contiguous runs; this process keeps its own. The stage
  // shares the very modules of `model`, under their names ("0", "1", ...).
  std::vector<int64_t> split(stages, int64_t(model->size()) / stages);
  split[0] += int64_t(model->size()) % stages;
  int64_t first = 0;
  for (int s = 0; s < stage; ++s) first += split[s];
  auto layers = loom::pipeline::stage_layers(model, first, first + split[stage]);

  loom::pipeline::PipelineStageOptions po;
  po.schedule = loom::pipeline::ScheduleKind::one_f_one_b;
  // The loss of one micro-batch (a mean over its rows), on the last stage: your own goes here.
  po.loss = [](const torch::Tensor& out, const torch::Tensor& t) { return torch::cross_entropy_loss(out, t); };
  loom::pipeline::PipelineStage pipe(layers, ctx->world(), po);
  torch::optim::SGD optimizer(layers->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  const int micro_batches = 4;
  for (int epoch = 0; epoch < 3; ++epoch) {
    double loss_sum = 0;
    for (int64_t start = 0; start + batch <= samples; start += batch) {
      // Stage 0 passes the inputs, the last stage the targets, the others nothing.
      const auto inputs = stage == 0 ? x.narrow(0, start, batch) : torch::Tensor();
      const auto targets = stage == stages - 1 ? y.narrow(0, start, batch) : torch::Tensor();
      optimizer.zero_grad();
      if (stages > 1) {
        loss_sum += pipe.run(batch, inputs, targets, micro_batches);  // forwards, loss, backwards: 1F1B
      } else {  // one process: the plain step that the pipeline replaces (the reference)
        auto loss = torch::cross_entropy_loss(model->forward(inputs), targets);
        loss.backward();
        loss_sum += loss.item<double>();
      }
      optimizer.step();  // each stage steps its own layers
    }
    if (stage == 0) std::cout << "epoch " << epoch << " loss " << loss_sum / (samples / batch) << std::endl;
  }
  // Collective: every stage sends its layers to rank 0, which then holds the whole model.
  loom::pipeline::gather_stages(model, split, ctx->world());
  if (stage == 0) examples::save_parameters(*model, std::string(argv[1]) + ".pt");
  return 0;
} catch (const std::exception& e) {  // loom's errors name the stage, peer or flag at fault
  std::cerr << "pipeline_loop: " << e.what() << std::endl;
  return 1;
}
