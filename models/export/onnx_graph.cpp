// The graph an ONNX export writes: initializers under unique names, nodes, attributes; and a
// traced op's attributes by name.
#include "models/export/onnx_graph.hpp"

#include <stdexcept>

namespace nn::onnx_export {

bool TracedOp::has(std::string_view name) const {
  if (!attributes) return false;
  for (const ag::OpAttribute& attribute : *attributes)
    if (attribute.name == name) return true;
  return false;
}

const ag::OpAttribute& TracedOp::find(std::string_view name) const {
  if (attributes)
    for (const ag::OpAttribute& attribute : *attributes)
      if (attribute.name == name) return attribute;
  throw std::logic_error(std::string(op) + " recorded no attribute '" + std::string(name) + "'");
}

std::int64_t TracedOp::integer(std::string_view name) const {
  const auto* value = std::get_if<std::int64_t>(&find(name).value);
  if (!value) throw std::logic_error(std::string(op) + "'s attribute '" + std::string(name) + "' is not an integer");
  return *value;
}

double TracedOp::real(std::string_view name) const {
  const auto* value = std::get_if<double>(&find(name).value);
  if (!value) throw std::logic_error(std::string(op) + "'s attribute '" + std::string(name) + "' is not a number");
  return *value;
}

const ag::OpAttribute::Integers& TracedOp::integers(std::string_view name) const {
  const auto* value = std::get_if<ag::OpAttribute::Integers>(&find(name).value);
  if (!value) throw std::logic_error(std::string(op) + "'s attribute '" + std::string(name) + "' is not a list");
  return *value;
}

namespace {

onnx::TensorProto float32_tensor(const std::string& name, const ag::Tensor& value) {
  if (value.dtype() != ag::DType::Float32)
    throw std::invalid_argument(name + " is " + std::string(ag::dtype_name(value.dtype())) + ", not float32");
  onnx::TensorProto tensor;
  tensor.set_data_type(onnx::TensorProto_DataType_FLOAT);
  for (const std::int64_t size : value.shape()) tensor.add_dims(size);
  // ONNX's raw data is little-endian, as the machines this builds on are.
  tensor.set_raw_data(value.raw_data(), value.nbytes());
  return tensor;
}

}  // namespace

void OnnxGraph::add_initializer(const std::string& name, const ag::Tensor& value, const std::string& what) {
  if (!names_.insert(name).second) throw std::logic_error("two initializers named '" + name + "'");
  onnx::TensorProto& tensor = *graph_.add_initializer() = float32_tensor(name, value);
  tensor.set_name(name);
  tensor.set_doc_string(what);
}

std::string OnnxGraph::add_constant(const std::string& hint, const ag::Tensor& value) {
  return add_constant(hint, float32_tensor(hint, value.dtype() == ag::DType::Float32 ? value : value.to(ag::DType::Float32)));
}

std::string OnnxGraph::add_constant(const std::string& hint, const std::vector<std::int64_t>& values) {
  onnx::TensorProto tensor;
  tensor.set_data_type(onnx::TensorProto_DataType_INT64);
  tensor.add_dims(static_cast<std::int64_t>(values.size()));
  for (const std::int64_t v : values) tensor.add_int64_data(v);
  return add_constant(hint, std::move(tensor));
}

std::string OnnxGraph::add_constant(const std::string& hint, onnx::TensorProto tensor) {
  // One initializer per value: a constant several ops use (each squash's 1.7159) is written once.
  const std::string key = tensor.SerializeAsString();
  if (const auto it = constants_.find(key); it != constants_.end()) return it->second;
  const std::string name = unique_name(hint);
  tensor.set_name(name);
  tensor.set_doc_string("constant");
  *graph_.add_initializer() = std::move(tensor);
  constants_.emplace(key, name);
  return name;
}

std::string OnnxGraph::unique_name(const std::string& hint) {
  std::string name = hint;
  for (int k = 2; names_.count(name); ++k) name = hint + "_" + std::to_string(k);
  names_.insert(name);
  return name;
}

onnx::NodeProto& OnnxGraph::add_node(const std::string& op_type, const std::vector<std::string>& inputs,
                                     const std::string& output) {
  onnx::NodeProto& node = *graph_.add_node();
  node.set_op_type(op_type);
  node.set_name(output);
  for (const std::string& input : inputs) node.add_input(input);
  node.add_output(output);
  return node;
}

void set_attribute(onnx::NodeProto& node, const std::string& name, std::int64_t value) {
  onnx::AttributeProto& attribute = *node.add_attribute();
  attribute.set_name(name);
  attribute.set_type(onnx::AttributeProto_AttributeType_INT);
  attribute.set_i(value);
}

void set_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values) {
  onnx::AttributeProto& attribute = *node.add_attribute();
  attribute.set_name(name);
  attribute.set_type(onnx::AttributeProto_AttributeType_INTS);
  for (const std::int64_t v : values) attribute.add_ints(v);
}

}  // namespace nn::onnx_export
