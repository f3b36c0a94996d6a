// The losses of models/registry.h: the values PyTorch's functional losses give, the
// target shapes they accept, and the weighted-shares property every strategy relies on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "loom/core/error.h"
#include "loom/models/registry.h"

namespace {

using loom::models::LossKind;
using loom::models::training_loss;

TEST(Loss, NamesParseAndPrint) {
  for (const auto kind : {LossKind::cross_entropy, LossKind::mse, LossKind::bce_with_logits}) {
    EXPECT_EQ(loom::models::parse_loss(loom::models::loss_name(kind)), kind);
  }
  try {
    loom::models::parse_loss("l1");
    FAIL();
  } catch (const loom::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--loss: unknown value 'l1' (expected one of: cross-entropy, mse, "
                                         "bce-with-logits)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Loss, ValuesAreTheFunctionalLosses) {
  torch::manual_seed(1);
  const auto out = torch::randn({6, 3});
  const auto classes = torch::randint(0, 3, {6});
  const auto values = torch::rand({6, 3});
  namespace F = torch::nn::functional;
  EXPECT_TRUE(torch::equal(training_loss(LossKind::cross_entropy, out, classes), F::cross_entropy(out, classes)));
  EXPECT_TRUE(torch::equal(training_loss(LossKind::mse, out, values), F::mse_loss(out, values)));
  EXPECT_TRUE(torch::equal(training_loss(LossKind::bce_with_logits, out, values),
                           F::binary_cross_entropy_with_logits(out, values)));
}

TEST(Loss, RegressionTargetsOfOneValuePerRowMatchAColumnOutput) {
  const auto out = torch::tensor({1.0f, 2.0f, 4.0f}).reshape({3, 1});
  const auto targets = torch::tensor({1, 1, 1}, torch::kInt64);  // [N] integers
  EXPECT_NEAR(training_loss(LossKind::mse, out, targets).item<double>(), (0 + 1 + 9) / 3.0, 1e-6);
  EXPECT_THROW(training_loss(LossKind::mse, out, torch::zeros({3, 2})), loom::ModelError);
}

TEST(Loss, SharesWeightedByRowsSumToTheWholeBatch) {
  torch::manual_seed(2);
  const auto out = torch::randn({7, 2});
  const auto y = torch::rand({7, 2});
  for (const auto kind : {LossKind::mse, LossKind::bce_with_logits}) {
    const double whole = training_loss(kind, out, y).item<double>();
    const double parts = training_loss(kind, out.narrow(0, 0, 3), y.narrow(0, 0, 3)).item<double>() * 3 / 7 +
                         training_loss(kind, out.narrow(0, 3, 4), y.narrow(0, 3, 4)).item<double>() * 4 / 7;
    EXPECT_NEAR(whole, parts, 1e-6) << loom::models::loss_name(kind);
  }
}

}  // namespace
