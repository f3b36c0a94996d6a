// A user's own training loop over loom's building blocks: a data set, the seeded
// global-batch order, a built-in model, and loom's model file (readable by torch.load).
#include <loom/core/dist_env.h>
#include <loom/data/dataset.h>
#include <loom/data/partitioner.h>
#include <loom/models/registry.h>
#include <loom/train/model_io.h>
#include <torch/torch.h>

#include <iostream>

int main(int argc, char** argv) {
  loom::init_process();
  at::set_num_threads(1);
  loom::data::DataOptions data;
  data.name = "synthetic";
  data.synthetic.num_samples = 1024;
  const auto train = loom::data::load_dataset(data, loom::data::Split::train);

  loom::models::ModelOptions mo;
  mo.sample_shape = train.sample_shape;
  auto model = loom::models::make_model("mlp", mo);
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));

  const int64_t batch = 64;
  double loss_value = 0;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto order = loom::data::epoch_permutation(train.size(), /*seed=*/0, epoch);
    for (int64_t t = 0; t + batch <= train.size(); t += batch) {
      const std::vector<int64_t> idx(order.begin() + t, order.begin() + t + batch);
      const auto b = loom::data::gather(train, idx);
      opt.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(model->forward(b.inputs), b.targets);
      loss.backward();
      opt.step();
      loss_value = loss.item<double>();
    }
  }
  if (argc > 1) loom::train::save_model_file(argv[1], loom::train::state_dict(*model));
  std::cout << "final loss " << loss_value << std::endl;
  return loss_value < 2.0 ? 0 : 1;  // it learned: chance level is ln(10) = 2.30
}
