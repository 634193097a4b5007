// The picture of an exported ONNX graph, as DOT text in the style of the engine's (autograd/dot.hpp).
#include <onnx/onnx_pb.h>

#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "autograd/dot.hpp"
#include "models/export/onnx.hpp"

namespace nn {

namespace {

// Constants (not parameters or buffers) of up to this many elements show their values: the scalars
// of `1.7159 * tanh(2x / 3)`, a reshape's target.
constexpr std::int64_t kShownValues = 8;

bool is_small_constant(const onnx::TensorProto& tensor) {
  std::int64_t count = 1;
  for (const std::int64_t size : tensor.dims()) count *= size;
  const bool readable = tensor.data_type() == onnx::TensorProto_DataType_INT64 ||
                        (tensor.data_type() == onnx::TensorProto_DataType_FLOAT && tensor.has_raw_data());
  return tensor.doc_string() == "constant" && count <= kShownValues && readable;
}

std::string dims_text(const onnx::TensorShapeProto& shape) {
  std::string text = "[";
  for (int d = 0; d < shape.dim_size(); ++d) {
    if (d) text += ", ";
    const onnx::TensorShapeProto_Dimension& dim = shape.dim(d);
    text += dim.has_dim_value() ? std::to_string(dim.dim_value()) : dim.dim_param().empty() ? "?" : dim.dim_param();
  }
  return text + "]";
}

std::string shape_text(const onnx::ValueInfoProto& value) {
  return value.type().tensor_type().has_shape() ? dims_text(value.type().tensor_type().shape()) : "";
}

std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

std::string integers_text(const google::protobuf::RepeatedField<std::int64_t>& values) {
  std::string text = "[";
  for (int i = 0; i < values.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(values[i]);
  }
  return text + "]";
}

// "conv1.weight\n[6, 1, 5, 5]" for a parameter or buffer and a large constant; a small constant's
// values instead of its shape: "constant\n1.7159", "reshape_11.shape\n[0, 400]".
std::string initializer_label(const onnx::TensorProto& tensor) {
  std::int64_t count = 1;
  std::string dims = "[";
  for (int d = 0; d < tensor.dims_size(); ++d) {
    count *= tensor.dims(d);
    if (d) dims += ", ";
    dims += std::to_string(tensor.dims(d));
  }
  dims += "]";
  if (!is_small_constant(tensor)) return tensor.name() + "\n" + dims;
  if (tensor.data_type() == onnx::TensorProto_DataType_INT64) return tensor.name() + "\n" + integers_text(tensor.int64_data());
  std::string values;
  for (std::int64_t i = 0; i < count; ++i) {
    float value;
    std::memcpy(&value, tensor.raw_data().data() + i * sizeof value, sizeof value);
    if (i) values += ", ";
    values += number_text(value);
  }
  return tensor.name() + "\n" + (tensor.dims_size() == 0 ? values : "[" + values + "]");
}

std::string attribute_text(const onnx::AttributeProto& attribute) {
  switch (attribute.type()) {
    case onnx::AttributeProto_AttributeType_INT: return attribute.name() + "=" + std::to_string(attribute.i());
    case onnx::AttributeProto_AttributeType_FLOAT: return attribute.name() + "=" + number_text(attribute.f());
    case onnx::AttributeProto_AttributeType_INTS: return attribute.name() + "=" + integers_text(attribute.ints());
    default: return attribute.name();
  }
}

}  // namespace

std::string onnx_graph_dot(std::string_view onnx_bytes, const std::string& title) {
  onnx::ModelProto model;
  if (!model.ParseFromArray(onnx_bytes.data(), static_cast<int>(onnx_bytes.size())))
    throw OnnxExportError("onnx_graph_dot: the bytes are not an ONNX model");
  const onnx::GraphProto& graph = model.graph();
  std::unordered_map<std::string, std::string> shape_of;  // value name -> "[N, 6, 28, 28]"
  for (const onnx::ValueInfoProto& value : graph.value_info()) shape_of[value.name()] = shape_text(value);
  for (const onnx::ValueInfoProto& value : graph.output()) shape_of[value.name()] = shape_text(value);

  std::string dot = "digraph onnx {\n  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12";
  if (!title.empty()) dot += ", label=\"" + ag::escape_dot_label(title) + "\", labelloc=t";
  dot += "];\n  node [shape=box, style=filled, fillcolor=lightgray, fontname=\"Helvetica\", fontsize=10, height=0.3];\n"
         "  edge [arrowsize=0.7];\n";
  // Ids n0, n1, ... in the graph's order: inputs, initializers, nodes, outputs.
  std::unordered_map<std::string, std::string> id_of;  // value name -> the DOT node producing it
  int next = 0;
  const auto declare = [&](const std::string& label, const std::string& style) {
    std::string id = "n";
    id += std::to_string(next++);
    dot += "  " + id + " [label=\"" + ag::escape_dot_label(label) + "\"" + style + "];\n";
    return id;
  };
  for (const onnx::ValueInfoProto& input : graph.input())
    id_of[input.name()] = declare(input.name() + "\n" + shape_text(input), ", style=\"filled,dashed\", fillcolor=white");
  for (const onnx::TensorProto& tensor : graph.initializer())
    id_of[tensor.name()] = declare(initializer_label(tensor), tensor.doc_string() == "constant"
                                                                  ? ", style=\"filled,dashed\", fillcolor=white"
                                                                  : ", fillcolor=lightblue");
  for (const onnx::NodeProto& node : graph.node()) {
    std::string label = node.op_type();
    std::string attributes;
    for (const onnx::AttributeProto& attribute : node.attribute()) {
      if (!attributes.empty()) attributes += ' ';
      attributes += attribute_text(attribute);
    }
    if (!attributes.empty()) label += "\n" + attributes;
    if (node.output_size() > 0 && shape_of.count(node.output(0))) label += "\n" + shape_of.at(node.output(0));
    const std::string id = declare(label, "");
    for (const std::string& input : node.input())
      if (!input.empty() && id_of.count(input)) dot += "  " + id_of.at(input) + " -> " + id + ";\n";
    for (const std::string& output : node.output()) id_of[output] = id;
  }
  for (const onnx::ValueInfoProto& output : graph.output()) {
    const std::string id = declare(output.name() + "\n" + shape_text(output), ", fillcolor=darkolivegreen1");
    if (id_of.count(output.name())) dot += "  " + id_of.at(output.name()) + " -> " + id + ";\n";
  }
  return dot + "}\n";
}

}  // namespace nn
