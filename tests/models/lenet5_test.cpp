// The modeling API through LeNet-5: names and layouts as PyTorch's state_dict, initialisation,
// gradients from the tape checked numerically, train/eval mode, and weights on disk.
#include "models/lenet5.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "autograd/gradcheck.hpp"
#include "models/nn/weights.hpp"
#include "ops/ops.hpp"

using namespace ag;

TEST(LeNet5, ParameterNamesAndShapesMatchPyTorchStateDict) {
  Generator gen(0);
  nn::LeNet5 model(gen);
  const std::vector<std::pair<std::string, Shape>> expected{
      {"conv1.weight", {6, 1, 5, 5}}, {"conv1.bias", {6}},   {"conv2.weight", {16, 6, 5, 5}},
      {"conv2.bias", {16}},           {"fc1.weight", {120, 400}}, {"fc1.bias", {120}},
      {"fc2.weight", {84, 120}},      {"fc2.bias", {84}},    {"fc3.weight", {10, 84}},
      {"fc3.bias", {10}}};
  const nn::NamedParameters params = model.named_parameters();
  ASSERT_EQ(params.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(params[i].first, expected[i].first);
    EXPECT_EQ(params[i].second.shape(), expected[i].second) << expected[i].first;
    EXPECT_EQ(params[i].second.name(), expected[i].first) << "the Variable carries its dotted name";
    EXPECT_TRUE(params[i].second.requires_grad());
  }
  EXPECT_EQ(model.parameter_count(), 61706);
}

TEST(LeNet5, InitialisationFollowsPyTorchBoundsAndTheSeed) {
  Generator a(5), b(5), c(6);
  nn::LeNet5 m1(a), m2(b), m3(c);
  // PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
  for (const auto& [name, p] : m1.named_parameters()) {
    const double fan_in = name.starts_with("conv1") ? 25 : name.starts_with("conv2") ? 150
                          : name.starts_with("fc1") ? 400 : name.starts_with("fc2") ? 120 : 84;
    const double bound = 1 / std::sqrt(fan_in);
    double largest = 0;
    for (double v : p.value().to_vector()) largest = std::max(largest, std::abs(v));
    EXPECT_LE(largest, bound) << name;
    if (p.value().numel() >= 80) {
      EXPECT_GT(largest, 0.9 * bound) << name << " fills its range";
    }
  }
  EXPECT_EQ(m1.conv1.weight.value().to_vector(), m2.conv1.weight.value().to_vector());
  EXPECT_NE(m1.conv1.weight.value().to_vector(), m3.conv1.weight.value().to_vector());
}

TEST(LeNet5, ForwardGivesLogProbabilitiesPerImage) {
  Generator gen(1);
  nn::LeNet5 model(gen);
  Variable x(Tensor::normal({3, 1, 28, 28}, 0, 1, gen));
  const Tensor logp = model(x).value();
  ASSERT_EQ(logp.shape(), (Shape{3, 10}));
  for (int n = 0; n < 3; ++n) {
    double total = 0;
    for (int k = 0; k < 10; ++k) total += std::exp(logp.at(n * 10 + k));
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

TEST(LeNet5, GradientsFromTheTapeMatchFiniteDifferences) {
  Generator gen(8);
  nn::LeNet5 model(gen);
  model.to(DType::Float64);
  Variable x(Tensor::normal({2, 1, 28, 28}, 0, 1, gen, DType::Float64));
  const std::vector<std::int64_t> targets{3, 7};
  std::vector<Variable> inputs = model.parameters();
  const GradcheckResult r = gradcheck(
      [&](const std::vector<Variable>&) { return nll_loss(model(x), targets); }, inputs,
      {.max_elements_per_input = 12});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_GT(r.checked, 100);
}

TEST(LeNet5, ZeroGradClearsEveryParameter) {
  Generator gen(2);
  nn::LeNet5 model(gen);
  Variable x(Tensor::normal({2, 1, 28, 28}, 0, 1, gen));
  const std::vector<std::int64_t> targets{1, 2};
  nll_loss(model(x), targets).backward();
  for (const auto& p : model.parameters()) ASSERT_TRUE(p.has_grad());
  model.zero_grad();
  for (const auto& p : model.parameters())
    for (double g : p.grad().to_vector()) ASSERT_EQ(g, 0.0);
}

TEST(Module, TrainAndEvalModeReachSubmodules) {
  Generator gen(0);
  nn::LeNet5 model(gen);
  EXPECT_TRUE(model.conv2.is_training());
  model.eval();
  EXPECT_FALSE(model.is_training());
  EXPECT_FALSE(model.fc3.is_training());
  model.train();
  EXPECT_TRUE(model.fc3.is_training());
}

TEST(Weights, RoundTripKeepsValuesAndMetadata) {
  const std::string path = (std::filesystem::temp_directory_path() / "lenet_test_roundtrip.safetensors").string();
  Generator a(3), b(4);
  nn::LeNet5 saved(a), loaded(b);
  nn::Metadata metadata{{"model", "LeNet-5"}};
  nn::record_normalization(metadata, {.mean = 0.5, .std = 0.25});
  nn::save_weights(saved, path, metadata);
  const nn::Metadata back = nn::load_weights(loaded, path);
  std::filesystem::remove(path);
  EXPECT_EQ(back.at("model"), "LeNet-5");
  EXPECT_DOUBLE_EQ(nn::normalization_from(back).mean, 0.5);
  EXPECT_DOUBLE_EQ(nn::normalization_from(back).std, 0.25);
  const auto p = saved.named_parameters(), q = loaded.named_parameters();
  for (std::size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i].second.value().to_vector(), q[i].second.value().to_vector());
}

TEST(Weights, LoadingKeepsTheParameterStorage) {
  // Optimisers and data-parallel replicas hold the parameters' tensors: loading must write into them.
  const std::string path = (std::filesystem::temp_directory_path() / "lenet_test_storage.safetensors").string();
  Generator a(3), b(4);
  nn::LeNet5 saved(a), loaded(b);
  nn::save_weights(saved, path, {});
  const Tensor before = loaded.fc1.weight.value();
  nn::load_weights(loaded, path);
  std::filesystem::remove(path);
  EXPECT_TRUE(before.same_storage(loaded.fc1.weight.value()));
  EXPECT_EQ(before.at(0), saved.fc1.weight.value().at(0));
}

TEST(Weights, BadNormalisationInMetadataIsRefusedNamingTheField) {
  nn::Metadata metadata{{"normalization_std", "0"}};
  EXPECT_THROW(nn::normalization_from(metadata), nn::WeightsError);
  metadata = {{"normalization_mean", "nan"}};
  try {
    nn::normalization_from(metadata);
    FAIL();
  } catch (const nn::WeightsError& e) {
    EXPECT_NE(std::string(e.what()).find("normalization_mean"), std::string::npos) << e.what();
  }
  EXPECT_DOUBLE_EQ(nn::normalization_from({}).mean, 0.1307);
}
