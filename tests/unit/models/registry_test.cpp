#include "loom/models/registry.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"

namespace {

using loom::models::make_model;
using loom::models::ModelOptions;

TEST(Models, OutputShapes) {
  for (const auto& name : loom::models::model_names()) {
    ModelOptions o;
    o.depth = 4;
    auto m = make_model(name, o);
    const auto y = m->forward(torch::randn({5, 1, 28, 28}));
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{5, 10})) << name;
  }
}

TEST(Models, CnnIsTheBenchmarkNetwork) {
  auto m = make_model("cnn", {});
  std::vector<std::string> names;
  int64_t count = 0;
  for (const auto& p : m->named_parameters()) {
    names.push_back(p.key());
    count += p.value().numel();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
                                             "9.weight", "9.bias"}));
  // conv 1->32 (320) + conv 32->64 (18496) + linear 3136->128 (401536) + linear 128->10 (1290)
  EXPECT_EQ(count, 320 + 18496 + 401536 + 1290);
}

TEST(Models, InitialisationIsSeededAndLeavesGlobalRngAlone) {
  torch::manual_seed(123);
  const auto before = torch::rand({1});
  torch::manual_seed(123);
  ModelOptions o;
  o.seed = 7;
  auto a = make_model("mlp", o);
  const auto after = torch::rand({1});
  EXPECT_TRUE(before.equal(after));
  auto b = make_model("mlp", o);
  o.seed = 8;
  auto c = make_model("mlp", o);
  EXPECT_TRUE(a->parameters()[0].equal(b->parameters()[0]));
  EXPECT_FALSE(a->parameters()[0].equal(c->parameters()[0]));
}

TEST(Models, DeepMlpDepth) {
  ModelOptions o;
  o.depth = 12;
  o.width = 64;
  auto m = make_model("deep-mlp", o);
  int linears = 0;
  for (const auto& child : m->children()) linears += child->as<torch::nn::Linear>() != nullptr;
  EXPECT_EQ(linears, 12);
}

TEST(Models, Errors) {
  try {
    make_model("resnet", {});
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model 'resnet' (known: cnn, deep-mlp, mlp)"), std::string::npos)
        << e.what();
  }
  ModelOptions flat;
  flat.sample_shape = {20};
  EXPECT_THROW(make_model("cnn", flat), loom::ModelError);
  EXPECT_NO_THROW(make_model("mlp", flat));
}

}  // namespace
