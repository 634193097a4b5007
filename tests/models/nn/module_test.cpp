// nn::Module, Sequential and the parameter-free layers: buffers (dotted names, saved and loaded with
// the weights, converted by to(), never trained), Module::forward's default, Sequential's PyTorch
// names and chained forward, Dropout in both modes, and layers that are their ops.
#include "models/nn/module.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "models/nn/layers.hpp"
#include "models/nn/safetensors.hpp"
#include "models/nn/sequential.hpp"
#include "models/nn/weights.hpp"
#include "ops/ops.hpp"

using namespace ag;
using ::testing::HasSubstr;

namespace {

std::vector<std::string> names_of(const nn::NamedParameters& named) {
  std::vector<std::string> names;
  for (const auto& [name, v] : named) names.push_back(name);
  return names;
}

// y = x * scale + weight: one buffer and one parameter (float32, as a model's are).
class Scale : public nn::Module {
 public:
  Scale() {
    weight = register_parameter("weight", Tensor::from({2}, std::vector<double>{0.5, -0.25}));
    scale = register_buffer("scale", Tensor::from({2}, std::vector<double>{2.0, 3.0}));
  }
  Variable forward(const Variable& x) const override { return add(mul(x, scale), weight); }
  Variable weight, scale;
};

// A buffer of its own, registered before a child that has one too.
class Outer : public nn::Module {
 public:
  Outer() {
    offset = register_buffer("offset", Tensor::from({3}, std::vector<double>{1, 2, 3}));
    register_module("inner", inner);
  }
  Variable forward(const Variable& x) const override { return inner(x); }
  Variable offset;
  Scale inner;
};

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

// n values in (-2, 2), none near 0 (relu's kink) and no two equal (max-pooling's ties).
Tensor spread_values(Shape shape, std::uint64_t seed) {
  Generator gen(seed);
  Tensor t(shape, DType::Float64);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const double magnitude = 0.1 + 1.9 * gen.uniform();
    t.set(i, gen.below(2) ? magnitude : -magnitude);
  }
  return t;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Buffers

TEST(Module, BuffersAreNamedWithDottedPathsOwnFirst) {
  Outer outer;
  const nn::NamedBuffers buffers = outer.named_buffers();
  EXPECT_EQ(names_of(buffers), (std::vector<std::string>{"offset", "inner.scale"}));
  EXPECT_EQ(buffers[1].second.name(), "inner.scale") << "the Variable carries its dotted name";
  EXPECT_EQ(buffers[1].second.id(), outer.inner.scale.id()) << "the module's own handle, not a copy";
}

TEST(Module, BuffersAreNeverParametersAndGetNoGradient) {
  Outer outer;
  EXPECT_EQ(names_of(outer.named_parameters()), (std::vector<std::string>{"inner.weight"}));
  EXPECT_EQ(outer.parameter_count(), 2);
  for (const auto& [name, b] : outer.named_buffers()) EXPECT_FALSE(b.requires_grad()) << name;

  Variable x(Tensor::from({2}, std::vector<double>{1.5, -0.5}), /*requires_grad=*/true);
  sum(outer(x)).backward();
  ASSERT_TRUE(outer.inner.weight.has_grad());
  EXPECT_EQ(outer.inner.weight.grad().to_vector(), (std::vector<double>{1, 1}));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 3})) << "the buffer took part in the forward";
  EXPECT_FALSE(outer.inner.scale.has_grad());
  EXPECT_FALSE(outer.offset.has_grad());
}

TEST(Module, SaveAndLoadWeightsCarryBuffers) {
  const std::string path = temp_path("module_test_buffers.safetensors");
  Outer saved, loaded;
  saved.offset.mutable_value().set(2, 30);
  saved.inner.scale.mutable_value().set(0, -7);
  saved.inner.weight.mutable_value().set(1, 0.125);
  nn::save_weights(saved, path, {});

  const nn::Safetensors file = nn::load_safetensors(path);
  EXPECT_EQ(file.tensors.count("offset"), 1u);
  EXPECT_EQ(file.tensors.count("inner.scale"), 1u);
  EXPECT_EQ(file.tensors.count("inner.weight"), 1u);

  nn::load_weights(loaded, path);
  std::filesystem::remove(path);
  EXPECT_EQ(loaded.offset.value().to_vector(), (std::vector<double>{1, 2, 30}));
  EXPECT_EQ(loaded.inner.scale.value().to_vector(), (std::vector<double>{-7, 3}));
  EXPECT_EQ(loaded.inner.weight.value().to_vector(), (std::vector<double>{0.5, 0.125}));
}

TEST(Module, LoadingRefusesAFileWithoutABufferNamingIt) {
  const std::string path = temp_path("module_test_missing_buffer.safetensors");
  Outer outer;
  nn::save_safetensors(path, {{"offset", outer.offset.value()}, {"inner.weight", outer.inner.weight.value()}});
  try {
    nn::load_weights(outer, path);
    std::filesystem::remove(path);
    FAIL() << "a file without inner.scale was loaded";
  } catch (const nn::WeightsError& e) {
    std::filesystem::remove(path);
    EXPECT_THAT(e.what(), HasSubstr("inner.scale"));
  }
}

TEST(Module, ToFloat64ConvertsParametersAndBuffers) {
  Outer outer;
  ASSERT_EQ(outer.inner.scale.dtype(), DType::Float32);
  outer.inner.scale.mutable_value().set(0, 2.5);
  outer.to(DType::Float64);
  for (const auto& [name, b] : outer.named_buffers()) EXPECT_EQ(b.dtype(), DType::Float64) << name;
  for (const auto& [name, p] : outer.named_parameters()) EXPECT_EQ(p.dtype(), DType::Float64) << name;
  EXPECT_EQ(outer.inner.scale.value().to_vector(), (std::vector<double>{2.5, 3}));
  outer.to(DType::Float32);
  EXPECT_EQ(outer.offset.dtype(), DType::Float32);
  EXPECT_EQ(outer.inner.scale.dtype(), DType::Float32);
}

TEST(Module, ForwardWithoutAnOverrideThrowsNamingIt) {
  nn::Module container;
  try {
    container(Variable(Tensor(Shape{1})));
    FAIL() << "Module::forward returned";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("Module::forward"));
  }
}

// ---------------------------------------------------------------------------------------------
// Sequential

TEST(Sequential, NamesChildrenByPositionLikePyTorch) {
  Generator gen(1);
  nn::Sequential layers;
  layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 4, .out = 3}, gen);
  layers.emplace_back<nn::ReLU>();
  layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 3, .out = 2}, gen);
  ASSERT_EQ(layers.size(), 3u);
  const nn::NamedParameters named = layers.named_parameters();
  EXPECT_EQ(names_of(named), (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"}));
  EXPECT_EQ(named[2].second.shape(), (Shape{2, 3}));
  EXPECT_EQ(named[2].second.name(), "2.weight");
  EXPECT_EQ(named[2].second.id(), dynamic_cast<nn::Linear&>(layers[2]).weight.id());
}

TEST(Sequential, ChainsForwardThroughItsModulesInOrder) {
  Generator gen(2);
  nn::Sequential layers;
  auto& first = layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 4, .out = 3}, gen);
  layers.emplace_back<nn::Tanh>();
  auto& second = layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 3, .out = 2}, gen);
  layers.emplace_back<nn::Sigmoid>();
  layers.to(DType::Float64);
  const Variable x(spread_values({5, 4}, 3));
  const std::vector<double> by_hand =
      sigmoid(linear(tanh(linear(x, first.weight, first.bias)), second.weight, second.bias)).value().to_vector();
  const std::vector<double> chained = layers(x).value().to_vector();
  ASSERT_EQ(chained.size(), 10u);
  for (std::size_t i = 0; i < chained.size(); ++i) EXPECT_NEAR(chained[i], by_hand[i], 1e-14) << i;
}

TEST(Sequential, InsideAModuleTakesItsNameAsPrefix) {
  struct Net : nn::Module {
    explicit Net(Generator& gen) {
      layers.emplace_back<nn::Flatten>();
      layers.emplace_back<nn::Linear>(nn::LinearOptions{.in = 6, .out = 4}, gen);
      layers.emplace_back<Scale>();
      register_module("layers", layers);
    }
    nn::Sequential layers;
  };
  Generator gen(4);
  Net net(gen);
  EXPECT_EQ(names_of(net.named_parameters()),
            (std::vector<std::string>{"layers.1.weight", "layers.1.bias", "layers.2.weight"}));
  EXPECT_EQ(names_of(net.named_buffers()), (std::vector<std::string>{"layers.2.scale"}));
  EXPECT_EQ(net.named_parameters()[0].second.name(), "layers.1.weight");
}

TEST(Sequential, RefusesANullModule) {
  nn::Sequential layers;
  EXPECT_THROW(layers.push_back(nullptr), std::invalid_argument);
  EXPECT_EQ(layers.size(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST(Dropout, InEvalModeReturnsItsInputAndDrawsNothing) {
  nn::Dropout dropout(0.5);
  dropout.eval();
  const Variable x(spread_values({4, 5}, 5), /*requires_grad=*/true);
  Generator gen(11);
  const std::string before = gen.state();
  const GeneratorScope scope(gen);
  const Variable y = dropout(x);
  EXPECT_EQ(y.id(), x.id()) << "the input object itself";
  EXPECT_EQ(gen.state(), before);
}

TEST(Dropout, InTrainingZeroesAboutPAndScalesTheRestByOneOverOneMinusP) {
  const double p = 0.3;
  nn::Dropout dropout(p);
  ASSERT_TRUE(dropout.is_training());
  const Tensor values = spread_values({100, 100}, 6);
  const Variable x(values, /*requires_grad=*/true);
  Generator gen(12);
  const GeneratorScope scope(gen);
  const Variable y = dropout(x);
  std::int64_t zeros = 0;
  for (std::int64_t i = 0; i < values.numel(); ++i) {
    if (y.value().at(i) == 0) {
      ++zeros;
    } else {
      ASSERT_DOUBLE_EQ(y.value().at(i), values.at(i) / (1 - p)) << i;
    }
  }
  // Binomial(10000, 0.3): standard deviation 46, so 0.3 +- 0.02 is more than 4 of them.
  EXPECT_NEAR(static_cast<double>(zeros) / 10000, p, 0.02);
  // The gradient goes through the kept elements only, scaled alike.
  sum(y).backward();
  for (std::int64_t i = 0; i < values.numel(); ++i)
    ASSERT_DOUBLE_EQ(x.grad().at(i), y.value().at(i) == 0 ? 0 : 1 / (1 - p)) << i;
}

TEST(Dropout, TheSameGeneratorSeedGivesTheSameMask) {
  nn::Dropout dropout(0.5);
  const Variable x(Tensor::ones({1000}, DType::Float64));
  const auto mask_with_seed = [&](std::uint64_t seed) {
    Generator gen(seed);
    const GeneratorScope scope(gen);
    return dropout(x).value().to_vector();
  };
  EXPECT_EQ(mask_with_seed(7), mask_with_seed(7));
  EXPECT_NE(mask_with_seed(7), mask_with_seed(8));
}

TEST(Dropout, RefusesAProbabilityOutsideZeroToOne) {
  EXPECT_THROW(nn::Dropout(1.5), std::invalid_argument);
  EXPECT_THROW(nn::Dropout(-0.1), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// The parameter-free layers

TEST(Layers, ActivationPoolingAndFlattenLayersEqualTheirOps) {
  const Variable x(spread_values({2, 3, 4, 4}, 7));
  const auto same = [](const Variable& a, const Variable& b) {
    EXPECT_EQ(a.shape(), b.shape());
    return a.value().to_vector() == b.value().to_vector();
  };
  EXPECT_TRUE(same(nn::ReLU()(x), relu(x)));
  EXPECT_TRUE(same(nn::Tanh()(x), tanh(x)));
  EXPECT_TRUE(same(nn::Sigmoid()(x), sigmoid(x)));
  EXPECT_TRUE(same(nn::LogSoftmax()(x), log_softmax(x, 1)));
  EXPECT_TRUE(same(nn::LogSoftmax(3)(x), log_softmax(x, 3)));
  EXPECT_TRUE(same(nn::Flatten()(x), flatten(x, 1)));
  EXPECT_TRUE(same(nn::Flatten(2)(x), flatten(x, 2)));
  EXPECT_TRUE(same(nn::MaxPool2d()(x), max_pool2d(x, 2)));
  EXPECT_TRUE(same(nn::MaxPool2d({.kernel = 3, .stride = 1})(x), max_pool2d(x, 3, 1)));
  EXPECT_TRUE(same(nn::AvgPool2d()(x), avg_pool2d(x, 2)));
  EXPECT_TRUE(same(nn::AvgPool2d({.kernel = 2, .stride = 1})(x), avg_pool2d(x, 2, 1)));
  // The layers differ from one another, so the comparisons above can tell them apart.
  EXPECT_FALSE(same(nn::Tanh()(x), sigmoid(x)));
}
