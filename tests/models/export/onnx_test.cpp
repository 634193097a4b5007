// ONNX export: the contract of the exported graph for every built-in model (input "image" and output
// "log_probs" with a free batch, opset and IR version, initializers named and valued as the
// parameters and buffers, metadata), the reshape that keeps the batch free, the model left as it
// was, and the refusals: an op without an ONNX form, a constant or a graph that depends on the batch
// size, a float64 model, and a graph ONNX's shape inference refuses. That the numbers agree with ONNX
// Runtime is tests/onnx/'s end-to-end test.
#include "models/export/onnx.hpp"

#include <onnx/onnx_pb.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>

#include "models/nn/layers.hpp"
#include "models/registry.hpp"
#include "ops/ops.hpp"

using ::testing::HasSubstr;

namespace {

onnx::ModelProto parse(const std::string& bytes) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(bytes));
  return model;
}

std::unique_ptr<nn::Model> make(const std::string& name) {
  ag::Generator gen(1);
  return nn::find_model(name).make(gen);
}

std::string export_model(nn::Model& model, const std::string& name, nn::Metadata metadata = {}) {
  return nn::export_onnx(model, {.model_name = name, .metadata = std::move(metadata)});
}

// "[N, 1, 28, 28]" for a value's declared shape.
std::string dims_of(const onnx::ValueInfoProto& value) {
  std::string text = "[";
  for (const auto& dim : value.type().tensor_type().shape().dim())
    text += (text.size() > 1 ? ", " : "") + (dim.has_dim_param() ? dim.dim_param() : std::to_string(dim.dim_value()));
  return text + "]";
}

const onnx::TensorProto* initializer(const onnx::ModelProto& model, const std::string& name) {
  for (const auto& tensor : model.graph().initializer())
    if (tensor.name() == name) return &tensor;
  return nullptr;
}

// x:[N, 1, 2, 2] -> flatten -> linear 4 -> 3, and then `tail` (an op of the test's choosing).
template <ag::Variable (*Tail)(const ag::Variable&)>
class SmallModel : public nn::Model {
 public:
  explicit SmallModel(ag::Generator& gen)
      : Model({.channels = 1, .height = 2, .width = 2, .normalization = {}}, /*classes=*/3), fc({.in = 4, .out = 3}, gen) {
    register_module("fc", fc);
  }
  ag::Variable forward(const ag::Variable& x) const override { return Tail(fc(ag::flatten(x))); }
  nn::Linear fc;
};

// softsign(x) = x / (1 + |x|), recorded as an op of its own, which has no ONNX form.
ag::Variable softsign(const ag::Variable& x) {
  ag::Tensor y = x.value().clone();
  for (std::int64_t i = 0; i < y.numel(); ++i) y.set(i, y.at(i) / (1 + std::abs(y.at(i))));
  return ag::record(std::move(y), "softsign", {x}, [](const ag::Tensor& dy, const ag::GradMask&) {
    return ag::TensorList{dy};  // never run
  });
}

// x + a constant of x's shape: the constant's batch dimension is the trace's.
ag::Variable plus_batch_constant(const ag::Variable& x) {
  return x + ag::Variable(ag::Tensor::full(x.shape(), 1.0));
}

// Recorded as "sum" (over every element, so ONNX's ReduceSum gives a 0-d result) but computing
// the identity, so the declared output [N, 3] contradicts what ONNX infers.
ag::Variable mislabelled_sum(const ag::Variable& x) {
  return ag::record(x.value().clone(), "sum", {x}, [](const ag::Tensor& dy, const ag::GradMask&) {
    return ag::TensorList{dy};  // never run
  });
}

// A graph that changes with the batch size: relu for even batches, tanh for odd ones.
ag::Variable batch_dependent(const ag::Variable& x) { return x.shape()[0] % 2 == 0 ? ag::relu(x) : ag::tanh(x); }

ag::Variable identity(const ag::Variable& x) { return x; }

}  // namespace

TEST(OnnxExport, EveryBuiltInModelHasTheContractsInputAndOutputWithAFreeBatch) {
  for (const std::string name : {"lenet5", "mlp", "lenet1998", "lenet1998-ml"}) {
    SCOPED_TRACE(name);
    auto model = make(name);
    const onnx::ModelProto proto = parse(export_model(*model, name));
    EXPECT_EQ(proto.ir_version(), nn::kOnnxIrVersion);
    ASSERT_EQ(proto.opset_import_size(), 1);
    EXPECT_EQ(proto.opset_import(0).version(), nn::kOnnxOpset);
    const onnx::GraphProto& graph = proto.graph();
    ASSERT_EQ(graph.input_size(), 1);
    EXPECT_EQ(graph.input(0).name(), "image");
    EXPECT_EQ(dims_of(graph.input(0)), "[N, 1, 28, 28]");
    EXPECT_EQ(graph.input(0).type().tensor_type().elem_type(), onnx::TensorProto_DataType_FLOAT);
    ASSERT_EQ(graph.output_size(), 1);
    EXPECT_EQ(graph.output(0).name(), "log_probs");
    EXPECT_EQ(dims_of(graph.output(0)), "[N, 10]");
    // Shape inference ran on the graph: every intermediate value has a type.
    EXPECT_GT(graph.value_info_size(), 3);
  }
}

TEST(OnnxExport, InitializersAreTheParametersAndBuffersUnderTheirNames) {
  for (const std::string name : {"lenet5", "mlp", "lenet1998"}) {
    SCOPED_TRACE(name);
    auto model = make(name);
    const onnx::ModelProto proto = parse(export_model(*model, name));
    nn::NamedParameters tensors = model->named_parameters();
    for (const auto& buffer : model->named_buffers()) tensors.push_back(buffer);
    for (const auto& [tensor_name, variable] : tensors) {
      const onnx::TensorProto* tensor = initializer(proto, tensor_name);
      ASSERT_NE(tensor, nullptr) << tensor_name;
      EXPECT_EQ(tensor->doc_string(), variable.requires_grad() ? "parameter" : "buffer") << tensor_name;
      ASSERT_EQ(tensor->raw_data().size(), variable.value().nbytes()) << tensor_name;
      EXPECT_EQ(std::memcmp(tensor->raw_data().data(), variable.value().raw_data(), variable.value().nbytes()), 0)
          << tensor_name;
    }
  }
}

TEST(OnnxExport, LeNet1998ConstantsAreWrittenOncePerValue) {
  auto model = make("lenet1998");
  const onnx::ModelProto proto = parse(export_model(*model, "lenet1998"));
  // The six squashes share their 1.7159 and 2/3, the two subsamplings their window area and
  // shape: no two constants hold the same value.
  std::map<std::string, std::string> constants;  // serialised value without the name -> name
  int scalars = 0;
  for (onnx::TensorProto tensor : proto.graph().initializer()) {
    if (tensor.doc_string() != "constant") continue;
    const std::string name = tensor.name();
    scalars += tensor.dims_size() == 0;
    tensor.clear_name();
    const auto [it, inserted] = constants.emplace(tensor.SerializeAsString(), name);
    EXPECT_TRUE(inserted) << name << " holds the value of " << it->second;
  }
  // The input's scale 1.275/255 and offset -0.1 (pad2d's border, the same value), 1.7159, 2/3 and
  // the window area 4.
  EXPECT_EQ(scalars, 5);
}

TEST(OnnxExport, ReshapeLeavesTheBatchSizeToTheInput) {
  auto model = make("lenet5");
  const onnx::ModelProto proto = parse(export_model(*model, "lenet5"));
  int reshapes = 0;
  for (const auto& node : proto.graph().node()) {
    if (node.op_type() != "Reshape") continue;
    ++reshapes;
    const onnx::TensorProto* target = initializer(proto, node.input(1));
    ASSERT_NE(target, nullptr);
    ASSERT_EQ(target->int64_data_size(), 2);
    EXPECT_EQ(target->int64_data(0), 0);  // the input's batch size
    EXPECT_EQ(target->int64_data(1), 400);
  }
  EXPECT_EQ(reshapes, 1);
}

TEST(OnnxExport, WritesTheMetadataAsMetadataProps) {
  auto model = make("mlp");
  const onnx::ModelProto proto =
      parse(export_model(*model, "mlp", {{"model", "mlp"}, {"test_accuracy", "0.984900"}}));
  std::map<std::string, std::string> props;
  for (const auto& entry : proto.metadata_props()) props[entry.key()] = entry.value();
  EXPECT_EQ(props, (std::map<std::string, std::string>{{"model", "mlp"}, {"test_accuracy", "0.984900"}}));
}

TEST(OnnxExport, LeavesTheModelAsItWas) {
  auto model = make("lenet1998");
  ASSERT_TRUE(model->is_training());
  export_model(*model, "lenet1998");
  EXPECT_TRUE(model->is_training());
  for (const auto& [name, buffer] : model->named_buffers()) EXPECT_FALSE(buffer.requires_grad()) << name;
  for (const auto& [name, parameter] : model->named_parameters()) EXPECT_TRUE(parameter.requires_grad()) << name;
}

TEST(OnnxExport, AnOpWithoutAnOnnxFormIsNamedWithTheModel) {
  ag::Generator gen(1);
  SmallModel<softsign> model(gen);
  try {
    export_model(model, "softsign_net");
    FAIL() << "exported an op without an ONNX form";
  } catch (const nn::OnnxExportError& e) {
    EXPECT_STREQ(e.what(), "model softsign_net uses op softsign, which has no ONNX form");
  }
}

TEST(OnnxExport, AConstantThatDependsOnTheBatchSizeIsRefused) {
  ag::Generator gen(1);
  SmallModel<plus_batch_constant> model(gen);
  try {
    export_model(model, "batch_constant");
    FAIL() << "exported a constant that depends on the batch size";
  } catch (const nn::OnnxExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("model batch_constant uses op add on a constant whose shape depends on the batch size"));
  }
}

TEST(OnnxExport, AGraphThatDependsOnTheBatchSizeIsRefused) {
  ag::Generator gen(1);
  SmallModel<batch_dependent> model(gen);
  try {
    export_model(model, "branching");
    FAIL() << "exported a graph that depends on the batch size";
  } catch (const nn::OnnxExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("model branching: its graph for a batch of 2 differs from its graph for 3 ("));
    EXPECT_THAT(e.what(), HasSubstr("relu against tanh"));
  }
}

TEST(OnnxExport, AGraphOnnxsShapeInferenceRefusesIsNeverReturned) {
  ag::Generator gen(1);
  SmallModel<mislabelled_sum> model(gen);
  try {
    export_model(model, "mislabelled");
    FAIL() << "exported a graph whose declared output contradicts shape inference";
  } catch (const nn::OnnxExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("model mislabelled: ONNX's checker refuses the exported graph"));
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

TEST(OnnxExport, AFloat64ModelIsRefused) {
  ag::Generator gen(1);
  SmallModel<identity> model(gen);
  model.to(ag::DType::Float64);
  EXPECT_THROW(export_model(model, "double"), nn::OnnxExportError);
}

TEST(OnnxExport, TheGraphPictureShowsOpsParametersAndTheOutput) {
  auto model = make("lenet5");
  const std::string dot = nn::onnx_graph_dot(export_model(*model, "lenet5"), "lenet5");
  EXPECT_THAT(dot, HasSubstr("Conv\\nkernel_shape=[5, 5] strides=[1, 1] pads=[2, 2, 2, 2]\\n[N, 6, 28, 28]"));
  EXPECT_THAT(dot, HasSubstr("conv1.weight\\n[6, 1, 5, 5]\", fillcolor=lightblue"));
  EXPECT_THAT(dot, HasSubstr("conv1.bias\\n[6]\", fillcolor=lightblue"));
  EXPECT_THAT(dot, HasSubstr("normalization.scale\\n0.0127282\", style=\"filled,dashed\""));
  EXPECT_THAT(dot, HasSubstr("log_probs\\n[N, 10]\", fillcolor=darkolivegreen1"));
  EXPECT_THROW(nn::onnx_graph_dot("not an onnx model"), nn::OnnxExportError);
}
