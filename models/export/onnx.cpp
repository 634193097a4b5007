// ONNX export: two traces of a model matched op by op, written as one ONNX graph after the
// model's input normalisation, and checked by ONNX's own checker and shape inference.
#include "models/export/onnx.hpp"

#include <onnx/checker.h>
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>
#include <utility>
#include <vector>

#include "autograd/engine.hpp"
#include "autograd/file.hpp"
#include "models/export/onnx_graph.hpp"
#include "ops/fusion/fusion.hpp"

namespace nn {

namespace {

using onnx_export::OnnxGraph;
using onnx_export::TracedOp;
using onnx_export::TracedShape;

// The batch sizes of the two traces: a size that differs between them is the batch's.
constexpr std::int64_t kFirstBatch = 2, kSecondBatch = 3;

// The names of the graph's ends and of the normalised image that the traced forward starts from.
const std::string kImage = "image", kLogProbs = "log_probs", kNormalizedImage = "normalized_image";

// The model's forward and log-probabilities on a batch of blank images, recorded op by op with
// attributes, unfused.
struct Trace {
  ag::Variable input;               // a leaf: the normalised images
  ag::Variable output;              // the log-probabilities
  std::vector<ag::Variable> order;  // all the output depends on, inputs before their consumers
  std::unordered_map<const void*, std::size_t> position;  // in order, by Variable::id()
};

Trace trace(const Model& model, std::int64_t batch) {
  const ag::NoFusionGuard unfused;
  const ag::AttributeGuard attributes;
  Trace t;
  t.input = ag::Variable(ag::Tensor(model.input_shape(batch)), /*requires_grad=*/true, "input");
  t.output = model.log_probabilities(model(t.input));
  const ag::VariableOrder reverse = ag::reverse_topological_order(t.output, /*include_constants=*/true);
  t.order.assign(reverse.rbegin(), reverse.rend());
  for (std::size_t i = 0; i < t.order.size(); ++i) t.position.emplace(t.order[i].id(), i);
  return t;
}

// While alive: the model in eval mode, and its buffers recording like parameters, so that an op on
// a buffer alone (lenet1998 reshapes its prototypes) is traced rather than computed into an
// unnamed constant. Restored on destruction.
class TraceSetup {
 public:
  explicit TraceSetup(Model& model)
      : model_(model), was_training_(model.is_training()), buffers_(model.named_buffers()) {
    model.eval();
    for (auto& [name, buffer] : buffers_) buffer.set_requires_grad(true);
  }
  ~TraceSetup() {
    for (auto& [name, buffer] : buffers_) buffer.set_requires_grad(false);
    model_.train(was_training_);
  }
  TraceSetup(const TraceSetup&) = delete;
  TraceSetup& operator=(const TraceSetup&) = delete;

 private:
  Model& model_;
  bool was_training_;
  NamedBuffers buffers_;
};

// A message on one line: ONNX's checker puts its context on lines of their own.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

std::string op_of(const ag::Variable& v) { return v.is_leaf() ? "(leaf)" : std::string(v.node()->op); }

// The shape of a Variable of the first trace, with the sizes that differ in the second.
TracedShape traced_shape(const ag::Variable& first, const ag::Variable& second) {
  TracedShape shape{.sizes = first.shape(), .batch = {}};
  for (std::size_t d = 0; d < first.shape().size(); ++d) shape.batch.push_back(first.shape()[d] != second.shape()[d]);
  return shape;
}

bool same_attributes(const ag::OpAttributes* a, const ag::OpAttributes* b) {
  if (!a || !b) return a == b;
  if (a->size() != b->size()) return false;
  for (std::size_t i = 0; i < a->size(); ++i)
    if ((*a)[i].name != (*b)[i].name || (*a)[i].value != (*b)[i].value) return false;
  return true;
}

bool same_values(const ag::Tensor& a, const ag::Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && a.to_vector() == b.to_vector();
}

void set_tensor_type(onnx::ValueInfoProto& value, const TracedShape& shape) {
  onnx::TypeProto_Tensor& type = *value.mutable_type()->mutable_tensor_type();
  type.set_elem_type(onnx::TensorProto_DataType_FLOAT);
  onnx::TensorShapeProto& dims = *type.mutable_shape();
  for (std::size_t d = 0; d < shape.sizes.size(); ++d) {
    if (shape.batch[d]) dims.add_dim()->set_dim_param("N");
    else dims.add_dim()->set_dim_value(shape.sizes[d]);
  }
}

// Builds the ModelProto from the two traces. fail(what) throws OnnxExportError("model NAME" + what).
class Exporter {
 public:
  Exporter(const Model& model, const OnnxExportOptions& options) : model_(model), options_(options) {}

  onnx::ModelProto run(const Trace& first, const Trace& second) {
    onnx::ModelProto proto;
    proto.set_ir_version(kOnnxIrVersion);
    onnx::OperatorSetIdProto& opset = *proto.add_opset_import();
    opset.set_domain("");
    opset.set_version(kOnnxOpset);
    proto.set_producer_name("lenet");
    proto.set_doc_string("log_probs = log-probabilities of the " + options_.model_name +
                         " model for image, grey levels 0..255 as in MNIST's files (0 the background)");
    for (const auto& [key, value] : options_.metadata) {
      onnx::StringStringEntryProto& entry = *proto.add_metadata_props();
      entry.set_key(key);
      entry.set_value(value);
    }
    onnx::GraphProto& graph = *proto.mutable_graph();
    graph.set_name(options_.model_name);
    OnnxGraph writer(graph);

    check_same_graph(first, second);
    write_parameters(writer, first);
    write_input(graph, writer, first, second);
    write_ops(writer, first, second);
    write_output(graph, first, second);
    return proto;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw OnnxExportError("model " + options_.model_name + what);
  }

  // Both traces must be one graph, op for op and edge for edge, apart from sizes.
  void check_same_graph(const Trace& first, const Trace& second) const {
    if (first.output.is_leaf()) fail(" records no op from its input to its log-probabilities");
    const auto differ = [&](const std::string& where) {
      fail(": its graph for a batch of " + std::to_string(kFirstBatch) + " differs from its graph for " +
           std::to_string(kSecondBatch) + " (" + where + "); ONNX export needs one graph for every batch size");
    };
    if (first.order.size() != second.order.size())
      differ(std::to_string(first.order.size()) + " values against " + std::to_string(second.order.size()));
    for (std::size_t i = 0; i < first.order.size(); ++i) {
      const ag::Variable &a = first.order[i], &b = second.order[i];
      bool same = a.is_leaf() == b.is_leaf() && a.shape().size() == b.shape().size();
      if (same && a.is_leaf()) same = (a.id() == first.input.id()) == (b.id() == second.input.id());
      if (same && !a.is_leaf()) {
        same = a.node()->op == b.node()->op && a.node()->inputs.size() == b.node()->inputs.size();
        for (std::size_t k = 0; same && k < a.node()->inputs.size(); ++k)
          same = first.position.at(a.node()->inputs[k].id()) == second.position.at(b.node()->inputs[k].id());
      }
      if (!same) differ("value " + std::to_string(i) + ": " + op_of(a) + " against " + op_of(b));
      if (!a.is_leaf() && !same_attributes(a.node()->attributes.get(), b.node()->attributes.get()))
        fail(" uses op " + op_of(a) + " with attributes that depend on the batch size");
    }
  }

  // image:[N, C, H, W] 0..255 -> normalized_image = image * scale + offset: the model's
  // (p / 255 - mean) / std in the multiply-add form fill_batch uses.
  void write_input(onnx::GraphProto& graph, OnnxGraph& writer, const Trace& first, const Trace& second) {
    onnx::ValueInfoProto& image = *graph.add_input();
    image.set_name(kImage);
    set_tensor_type(image, traced_shape(first.input, second.input));
    const Normalization& n = model_.input().normalization;
    const std::string scale = writer.add_constant("normalization.scale", ag::Tensor::full({}, 1.0 / (255.0 * n.std)));
    const std::string offset = writer.add_constant("normalization.offset", ag::Tensor::full({}, -n.mean / n.std));
    writer.add_node("Mul", {kImage, scale}, "scaled_image");
    writer.add_node("Add", {"scaled_image", offset}, kNormalizedImage);
    name_of_.emplace(first.input.id(), kNormalizedImage);
  }

  // Every parameter and buffer the graph uses, under its own name, in the model's order.
  void write_parameters(OnnxGraph& writer, const Trace& first) {
    const auto write = [&](const auto& named, const std::string& what) {
      for (const auto& [name, tensor] : named) {
        if (!first.position.count(tensor.id())) continue;  // unused by the forward
        writer.add_initializer(name, tensor.value(), what);
        name_of_.emplace(tensor.id(), name);
      }
    };
    write(model_.named_parameters(), "parameter");
    write(model_.named_buffers(), "buffer");
  }

  // The ONNX name of a leaf of the first trace that is neither the input nor a parameter: a
  // constant, written on first use, once per value (`1.7159 * tanh(...)` makes a new 1.7159 at
  // every call). It must be the same in both traces.
  const std::string& constant(OnnxGraph& writer, const ag::Variable& a, const ag::Variable& b, std::string_view op) {
    if (const auto it = name_of_.find(a.id()); it != name_of_.end()) return it->second;
    if (a.shape() != b.shape())
      fail(" uses op " + std::string(op) + " on a constant whose shape depends on the batch size (" +
           ag::shape_str(a.shape()) + " for a batch of " + std::to_string(kFirstBatch) + ", " +
           ag::shape_str(b.shape()) + " for " + std::to_string(kSecondBatch) + ")");
    if (!same_values(a.value(), b.value()))
      fail(" uses op " + std::string(op) + " on a constant that differs from one run to the next");
    for (const auto& [value, name] : constants_)
      if (same_values(value, a.value())) return name_of_.emplace(a.id(), name).first->second;
    const std::string name = writer.add_constant("constant", a.value());
    constants_.emplace_back(a.value(), name);
    return name_of_.emplace(a.id(), name).first->second;
  }

  void write_ops(OnnxGraph& writer, const Trace& first, const Trace& second) {
    for (std::size_t i = 0; i < first.order.size(); ++i) {
      const ag::Variable &a = first.order[i], &b = second.order[i];
      if (a.is_leaf()) continue;  // written by write_input, write_parameters, or on first use
      const ag::Node& node = *a.node();
      const onnx_export::OnnxForm form = onnx_export::onnx_form_of(node.op);
      if (!form) fail(" uses op " + std::string(node.op) + ", which has no ONNX form");
      TracedOp op{.op = node.op, .attributes = node.attributes.get(), .inputs = {}, .input_shapes = {},
                  .output = a.id() == first.output.id() ? kLogProbs : std::string(node.op) + "_" + std::to_string(i),
                  .output_shape = traced_shape(a, b)};
      for (std::size_t k = 0; k < node.inputs.size(); ++k) {
        const ag::Variable& input = node.inputs[k];
        const ag::Variable& other = b.node()->inputs[k];
        op.inputs.push_back(input.is_leaf() ? constant(writer, input, other, node.op) : name_of_.at(input.id()));
        op.input_shapes.push_back(traced_shape(input, other));
      }
      try {
        form(op, writer);
      } catch (const std::exception& e) {
        fail(": op " + std::string(node.op) + ": " + e.what());
      }
      name_of_.emplace(a.id(), op.output);
    }
  }

  void write_output(onnx::GraphProto& graph, const Trace& first, const Trace& second) {
    const TracedShape shape = traced_shape(first.output, second.output);
    if (shape.sizes.size() != 2 || !shape.batch[0] || shape.batch[1] || shape.sizes[1] != model_.classes())
      fail(": its log-probabilities for a batch of " + std::to_string(kFirstBatch) + " have shape " +
           ag::shape_str(shape.sizes) + ", not [" + std::to_string(kFirstBatch) + ", " +
           std::to_string(model_.classes()) + "]");
    onnx::ValueInfoProto& output = *graph.add_output();
    output.set_name(kLogProbs);
    set_tensor_type(output, shape);
  }

  const Model& model_;
  const OnnxExportOptions& options_;
  std::unordered_map<const void*, std::string> name_of_;  // ONNX names of the first trace's Variables
  std::vector<std::pair<ag::Tensor, std::string>> constants_;  // written so far, by value
};

}  // namespace

std::string export_onnx(Model& model, const OnnxExportOptions& options) {
  const std::string& name = options.model_name;
  if (!ag::grad_enabled())
    throw OnnxExportError("model " + name + ": export traces the model and cannot while a NoGradGuard is alive");
  NamedParameters tensors = model.named_parameters();
  for (const auto& buffer : model.named_buffers()) tensors.push_back(buffer);
  for (const auto& [tensor_name, tensor] : tensors)
    if (tensor.dtype() != ag::DType::Float32)
      throw OnnxExportError("model " + name + ": " + tensor_name + " is " + std::string(ag::dtype_name(tensor.dtype())) +
                            "; ONNX export writes float32 (convert the model with to(ag::DType::Float32))");
  onnx::ModelProto proto;
  {
    const TraceSetup setup(model);
    const Trace first = trace(model, kFirstBatch);
    const Trace second = trace(model, kSecondBatch);
    proto = Exporter(model, options).run(first, second);
  }
  // The checker and strict shape inference (which also records every value's inferred type and
  // shape in the graph, for viewers): a graph they refuse is never written.
  try {
    onnx::checker::check_model(proto);
    onnx::shape_inference::InferShapes(proto, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict_mode=*/1,
                                                                   /*data_prop=*/true));
  } catch (const std::exception& e) {
    throw OnnxExportError("model " + name + ": ONNX's checker refuses the exported graph: " + one_line(e.what()));
  }
  std::string bytes;
  if (!proto.SerializeToString(&bytes)) throw OnnxExportError("model " + name + ": the ONNX model cannot be serialised");
  return bytes;
}

Metadata onnx_metadata_of_weights(const Metadata& weights_metadata, const std::string& weights_path) {
  Metadata metadata;
  for (const auto& [key, value] : weights_metadata)
    if (!key.starts_with("normalization_")) metadata[key] = value;
  metadata["weights_file"] = std::filesystem::path(weights_path).filename().string();
  return metadata;
}

void save_onnx(Model& model, const std::string& path, const OnnxExportOptions& options) {
  ag::write_file_atomically(path, export_onnx(model, options));
}

}  // namespace nn
