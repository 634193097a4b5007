// nn::Model and what is built on it: the default loss and log-probabilities against hand
// computations, classify, argmax_rows, the registry of models, weights that record their model,
// and check_model_gradients passing real models and catching a wrong backward.
#include "models/model.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/lenet5.hpp"
#include "models/mlp.hpp"
#include "models/nn/layers.hpp"
#include "models/nn/weights.hpp"
#include "models/registry.hpp"
#include "ops/ops.hpp"

using namespace ag;
using ::testing::HasSubstr;

namespace {

// One channel of height x width pixels, MNIST's normalisation.
nn::InputSpec grey_images(std::int64_t height, std::int64_t width) {
  nn::InputSpec spec;
  spec.height = height, spec.width = width;
  return spec;
}

// y = tanh(x), recorded with a backward that is right (dx = dy (1 - y^2)) or deliberately wrong
// (dx = dy (1 - y)).
Variable recorded_tanh(const Variable& x, bool wrong) {
  Tensor y = tanh(x.detach()).value();
  const SavedTensor saved_y(y, SavedTensor::kOutput);
  return record(std::move(y), "tanh", {x}, [saved_y, wrong](const Tensor& dy, const GradMask&) {
    const Tensor& y = saved_y.unpack();
    Tensor dx = Tensor::empty(dy.shape(), dy.dtype());
    dispatch(dy.dtype(), [&]<class T>() {
      for (std::int64_t i = 0; i < dx.numel(); ++i) {
        const T yi = y.data<T>()[i];
        dx.data<T>()[i] = dy.data<T>()[i] * (wrong ? T(1) - yi : T(1) - yi * yi);
      }
    });
    return TensorList{dx};
  });
}

// [N, 1, 2, 2] -> flatten -> linear 4 -> 3 -> tanh (recorded as above), 3 classes.
template <bool Wrong>
class RecordedTanh : public nn::Model {
 public:
  explicit RecordedTanh(Generator& gen)
      : Model(grey_images(2, 2), /*classes=*/3), fc({.in = 4, .out = 3}, gen) {
    register_module("fc", fc);
  }
  Variable forward(const Variable& x) const override { return recorded_tanh(fc(flatten(x)), Wrong); }
  nn::Linear fc;
};

// [N, 1, 3, 3] -> flatten -> linear 9 -> 4 -> dropout 0.5: a forward that draws random numbers.
class LinearDropout : public nn::Model {
 public:
  explicit LinearDropout(Generator& gen)
      : Model(grey_images(3, 3), /*classes=*/4), fc({.in = 9, .out = 4}, gen), dropout(0.5) {
    register_module("fc", fc);
    register_module("dropout", dropout);
  }
  Variable forward(const Variable& x) const override { return dropout(fc(flatten(x))); }
  nn::Linear fc;
  nn::Dropout dropout;
};

std::vector<std::string> parameter_names(const nn::Module& module) {
  std::vector<std::string> names;
  for (const auto& [name, p] : module.named_parameters()) names.push_back(name);
  return names;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / name).string();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Model's defaults

TEST(Model, DefaultLossIsTheNegativeLogLikelihoodOfLogSoftmax) {
  const nn::Model model(grey_images(2, 2), /*classes=*/3);
  const std::vector<double> logits{0.5, -1.25, 2.0, 1.5, 0.25, -0.75};  // [2, 3]
  const std::vector<std::int64_t> targets{2, 0};
  const Variable output(Tensor::from({2, 3}, logits, DType::Float64), /*requires_grad=*/true);
  const Variable loss = model.loss(output, targets);

  // By hand: mean over rows of logsumexp(row) - row[target]; d loss / d logit = (softmax - onehot) / N.
  double expected = 0;
  std::vector<double> expected_grad(6);
  for (int n = 0; n < 2; ++n) {
    double total = 0;
    for (int k = 0; k < 3; ++k) total += std::exp(logits[n * 3 + k]);
    expected += (std::log(total) - logits[n * 3 + targets[n]]) / 2;
    for (int k = 0; k < 3; ++k)
      expected_grad[n * 3 + k] = (std::exp(logits[n * 3 + k]) / total - (k == targets[n] ? 1 : 0)) / 2;
  }
  ASSERT_EQ(loss.value().numel(), 1);
  EXPECT_NEAR(loss.value().item(), expected, 1e-14);
  loss.backward();
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(output.grad().at(i), expected_grad[i], 1e-14) << i;
}

TEST(Model, DefaultLogProbabilitiesAreLogSoftmaxOverTheClasses) {
  const nn::Model model(grey_images(2, 2), /*classes=*/4);
  const std::vector<double> logits{3.0, -1.0, 0.5, 0.25, -2.0, -2.5, 4.0, 1.0};  // [2, 4]
  const Tensor log_probabilities =
      model.log_probabilities(Variable(Tensor::from({2, 4}, logits, DType::Float64))).value();
  ASSERT_EQ(log_probabilities.shape(), (Shape{2, 4}));
  for (int n = 0; n < 2; ++n) {
    double total = 0;
    for (int k = 0; k < 4; ++k) total += std::exp(log_probabilities.at(n * 4 + k));
    EXPECT_NEAR(total, 1.0, 1e-14) << "row " << n;
    // A shift per row: the differences between classes are the logits'.
    for (int k = 1; k < 4; ++k)
      EXPECT_NEAR(log_probabilities.at(n * 4 + k) - log_probabilities.at(n * 4), logits[n * 4 + k] - logits[n * 4],
                  1e-14);
  }
}

TEST(Model, InputShapeIsTheBatchThenChannelsHeightAndWidth) {
  nn::InputSpec colour = grey_images(5, 7);
  colour.channels = 3;
  const nn::Model model(colour, /*classes=*/2);
  EXPECT_EQ(model.input_shape(4), (Shape{4, 3, 5, 7}));
  EXPECT_EQ(model.classes(), 2);
}

TEST(Model, RefusesClassCountsOutsideTwoTo256AndEmptyInputs) {
  EXPECT_THROW(nn::Model({}, /*classes=*/1), std::invalid_argument);
  EXPECT_THROW(nn::Model({}, /*classes=*/257), std::invalid_argument);
  nn::InputSpec no_channels;
  no_channels.channels = 0;
  EXPECT_THROW(nn::Model(no_channels, /*classes=*/10), std::invalid_argument);
  EXPECT_NO_THROW(nn::Model({}, /*classes=*/256));
}

// ---------------------------------------------------------------------------------------------
// classify and argmax_rows

TEST(Classify, GivesOneDistributionPerImage) {
  Generator gen(3);
  nn::LeNet5 model(gen);
  model.eval();
  const Tensor input = Tensor::normal({3, 1, 28, 28}, 0, 1, gen);
  const std::vector<nn::Prediction> predictions = nn::classify(model, input);
  ASSERT_EQ(predictions.size(), 3u);
  // The model's own scores, for the predicted classes.
  const std::vector<std::uint8_t> argmax = nn::argmax_rows(model(Variable(input)).value());
  for (std::size_t n = 0; n < predictions.size(); ++n) {
    const nn::Prediction& p = predictions[n];
    ASSERT_EQ(p.probabilities.size(), 10u);
    double total = 0;
    for (double q : p.probabilities) {
      EXPECT_GE(q, 0);
      total += q;
    }
    EXPECT_NEAR(total, 1.0, 1e-12);
    EXPECT_EQ(p.digit, std::max_element(p.probabilities.begin(), p.probabilities.end()) - p.probabilities.begin());
    EXPECT_EQ(p.digit, argmax[n]) << "image " << n;
  }
  EXPECT_NE(predictions[0].probabilities, predictions[1].probabilities) << "each image has its own";
}

TEST(Classify, WrongInputShapeThrowsNamingBothShapes) {
  Generator gen(3);
  nn::LeNet5 model(gen);
  for (const Shape& shape : {Shape{2, 1, 27, 28}, Shape{1, 28, 28}, Shape{2, 3, 28, 28}}) {
    try {
      nn::classify(model, Tensor(shape));
      ADD_FAILURE() << shape_str(shape) << " accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr("[1, 1, 28, 28]"));
      EXPECT_THAT(e.what(), HasSubstr(shape_str(shape)));
    }
  }
}

TEST(ArgmaxRows, PicksTheFirstMaximumOnTies) {
  const std::vector<double> scores{1, 5, 5, 2,         // tie between 1 and 2
                                   7, 7, 7, 7,         // all equal
                                   -1, -3, -2, -0.5,   // the last
                                   4, 3, 4, 4};        // tie including the first
  for (DType dtype : {DType::Float32, DType::Float64})
    EXPECT_EQ(nn::argmax_rows(Tensor::from({4, 4}, scores, dtype)), (std::vector<std::uint8_t>{1, 0, 3, 0}))
        << dtype_name(dtype);
  EXPECT_THROW(nn::argmax_rows(Tensor({4})), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// The registry

TEST(Registry, AnUnknownNameThrowsListingTheRegisteredModels) {
  try {
    nn::find_model("nosuch");
    FAIL() << "found a model named nosuch";
  } catch (const nn::UnknownModel& e) {
    EXPECT_THAT(e.what(), HasSubstr("'nosuch'"));
    EXPECT_THAT(e.what(), HasSubstr("lenet5, mlp"));
  }
  EXPECT_EQ(nn::find_model("mlp").name, "mlp");
}

TEST(Registry, RegisterModelRefusesADuplicateAnEmptyNameAndNoMakeFunction) {
  const std::size_t before = nn::registered_models().size();
  EXPECT_THROW(nn::register_model({"lenet5", "another", nn::make_model<nn::Mlp>, {}}), std::invalid_argument);
  EXPECT_THROW(nn::register_model({"", "nameless", nn::make_model<nn::Mlp>, {}}), std::invalid_argument);
  EXPECT_THROW(nn::register_model({"no_make", "", nullptr, {}}), std::invalid_argument);
  EXPECT_EQ(nn::registered_models().size(), before);
  EXPECT_EQ(nn::find_model("lenet5").description, nn::registered_models().front().description)
      << "the original lenet5 entry is untouched";
}

TEST(Registry, ARegisteredModelIsFoundAndEarlierEntriesStayWhereTheyWere) {
  const nn::ModelEntry* lenet5 = &nn::find_model("lenet5");
  nn::register_model({"model_test_tanh", "test model", nn::make_model<RecordedTanh<false>>, {}});
  EXPECT_EQ(&nn::find_model("lenet5"), lenet5);
  const nn::ModelEntry& added = nn::find_model("model_test_tanh");
  EXPECT_EQ(added.description, "test model");
  EXPECT_EQ(&nn::registered_models().back(), &added);
  EXPECT_THROW(nn::register_model({"model_test_tanh", "again", nn::make_model<RecordedTanh<false>>, {}}),
               std::invalid_argument);
}

TEST(Registry, EveryModelGivesLogProbabilitiesOfItsClassesForItsInputShape) {
  ASSERT_GE(nn::registered_models().size(), 2u);
  for (const nn::ModelEntry& entry : nn::registered_models()) {
    Generator gen(5);
    const std::unique_ptr<nn::Model> model = entry.make(gen);
    ASSERT_NE(model, nullptr) << entry.name;
    const Variable output = (*model)(Variable(Tensor::normal(model->input_shape(2), 0, 1, gen)));
    const Tensor log_probabilities = model->log_probabilities(output).value();
    ASSERT_EQ(log_probabilities.shape(), (Shape{2, model->classes()})) << entry.name;
    for (std::int64_t n = 0; n < 2; ++n) {
      double total = 0;
      for (std::int64_t k = 0; k < model->classes(); ++k) total += std::exp(log_probabilities.at(n * model->classes() + k));
      EXPECT_NEAR(total, 1.0, 1e-5) << entry.name << " row " << n;
    }
    // The factory DataParallel uses makes the same kind of model.
    EXPECT_EQ(parameter_names(*nn::factory_of(entry)()), parameter_names(*model)) << entry.name;
  }
}

TEST(Registry, TheBuiltInModelsHaveTheirPublishedSizes) {
  Generator gen(0);
  EXPECT_EQ(nn::find_model("lenet5").make(gen)->parameter_count(), 61706);
  const std::unique_ptr<nn::Model> mlp = nn::find_model("mlp").make(gen);
  EXPECT_EQ(mlp->parameter_count(), 266610);
  const nn::NamedParameters named = mlp->named_parameters();
  const std::vector<std::pair<std::string, Shape>> expected{
      {"layers.1.weight", {300, 784}}, {"layers.1.bias", {300}}, {"layers.3.weight", {100, 300}},
      {"layers.3.bias", {100}},        {"layers.5.weight", {10, 100}}, {"layers.5.bias", {10}}};
  ASSERT_EQ(named.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(named[i].first, expected[i].first);
    EXPECT_EQ(named[i].second.shape(), expected[i].second) << expected[i].first;
  }
}

// ---------------------------------------------------------------------------------------------
// Weights that record their model

TEST(Weights, LoadRefusesAFileOfAnotherModelNamingBothAndTheFile) {
  const std::string path = temp_path("model_test_lenet5.safetensors");
  Generator gen(6);
  nn::LeNet5 lenet5(gen);
  nn::save_weights(lenet5, path, {{"model", "lenet5"}});
  nn::Mlp mlp(gen);
  try {
    nn::load_weights(mlp, path, "mlp");
    ADD_FAILURE() << "an mlp loaded lenet5's weights";
  } catch (const nn::WeightsError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'lenet5'"));
    EXPECT_THAT(e.what(), HasSubstr("'mlp'"));
    EXPECT_THAT(e.what(), HasSubstr(path));
  }
  // The name alone decides: the same shapes under another name are refused, and nothing is loaded.
  nn::LeNet5 other(gen);
  const std::vector<double> before = other.fc1.weight.value().to_vector();
  EXPECT_THROW(nn::load_weights(other, path, "lenet5_copy"), nn::WeightsError);
  EXPECT_EQ(other.fc1.weight.value().to_vector(), before);
  // The right name loads.
  EXPECT_EQ(nn::load_weights(other, path, "lenet5").at("model"), "lenet5");
  std::filesystem::remove(path);
  EXPECT_EQ(other.fc1.weight.value().to_vector(), lenet5.fc1.weight.value().to_vector());
}

// ---------------------------------------------------------------------------------------------
// check_model_gradients

TEST(ModelGradients, PassForLeNet5AndMlpWithAReportPerTensor) {
  for (const char* name : {"lenet5", "mlp"}) {
    Generator gen(7);
    const std::unique_ptr<nn::Model> model = nn::find_model(name).make(gen);
    const nn::ModelGradcheck result = nn::check_model_gradients(*model);
    EXPECT_TRUE(result.ok) << name << ": " << result.message;
    std::vector<std::string> reported;
    for (const GradcheckInputReport& t : result.tensors) {
      reported.push_back(t.name);
      EXPECT_GT(t.checked, 0) << name << " " << t.name;
      EXPECT_LE(t.worst_ratio, 1) << name << " " << t.name;
    }
    std::vector<std::string> expected{"input"};
    for (const std::string& p : parameter_names(*model)) expected.push_back(p);
    EXPECT_EQ(reported, expected) << name;
    EXPECT_EQ(model->named_parameters().front().second.dtype(), DType::Float64) << "checked in float64";
  }
}

TEST(ModelGradients, FailForAModelWithAWrongBackwardNamingEveryTensor) {
  Generator gen(8), same_gen(8);
  RecordedTanh<true> wrong(gen);
  RecordedTanh<false> right(same_gen);
  const nn::ModelGradcheck control = nn::check_model_gradients(right);
  EXPECT_TRUE(control.ok) << "the same model with tanh's true backward: " << control.message;

  const nn::ModelGradcheck result = nn::check_model_gradients(wrong);
  EXPECT_FALSE(result.ok);
  EXPECT_THAT(result.message, HasSubstr("mismatch"));
  ASSERT_EQ(result.tensors.size(), 3u);
  EXPECT_EQ(result.tensors[0].name, "input");
  EXPECT_EQ(result.tensors[1].name, "fc.weight");
  EXPECT_EQ(result.tensors[2].name, "fc.bias");
  // Every tensor is reached through the wrong tanh, and every one is compared (no stop at the first).
  for (const GradcheckInputReport& t : result.tensors) {
    EXPECT_GT(t.checked, 0) << t.name;
    EXPECT_GT(t.worst_ratio, 1) << t.name;
  }
}

TEST(ModelGradients, DropoutSeesTheSameMaskInEveryForward) {
  Generator gen(9);
  LinearDropout model(gen);
  ASSERT_TRUE(model.dropout.is_training());
  const nn::ModelGradcheck result = nn::check_model_gradients(model, {.elements_per_tensor = 0});
  EXPECT_TRUE(result.ok) << result.message;
  ASSERT_EQ(result.tensors.size(), 3u);
  EXPECT_EQ(result.tensors[1].checked, 36) << "every element of fc.weight";
}
