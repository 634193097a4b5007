// What the ONNX exporter (onnx.cpp) writes a graph with: a traced op as its ONNX form sees it, the
// graph being written, and the table of our ops' ONNX forms (onnx_ops.cpp). Internal to
// models/export/: the public API (onnx.hpp) shows no protobuf type.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "autograd/variable.hpp"

namespace nn::onnx_export {

/// A traced value's shape: its sizes in the first trace, and which of them grow with the batch
/// (they differed in a second trace of another batch size).
struct TracedShape {
  ag::Shape sizes;
  std::vector<bool> batch;  // batch[d]: size d depends on the batch size
};

/// One op of the trace, as its ONNX form is written from.
struct TracedOp {
  std::string_view op;                           // our op's name, "conv2d"
  const ag::OpAttributes* attributes = nullptr;  // as recorded; null if it recorded none
  std::vector<std::string> inputs;               // ONNX value names, in the op's input order
  std::vector<TracedShape> input_shapes;
  std::string output;                            // the ONNX value name of its result
  TracedShape output_shape;

  bool has(std::string_view name) const;
  /// The attribute `name`; throw naming the op and the attribute if it was not recorded or has
  /// another type.
  std::int64_t integer(std::string_view name) const;
  double real(std::string_view name) const;
  const ag::OpAttribute::Integers& integers(std::string_view name) const;

 private:
  const ag::OpAttribute& find(std::string_view name) const;
};

/// The graph being written: nodes in the order they are added (a topological order), and
/// initializers under unique names.
class OnnxGraph {
 public:
  explicit OnnxGraph(onnx::GraphProto& graph) : graph_(graph) {}

  /// A float32 initializer under exactly `name`, a parameter's or a buffer's, which its doc_string
  /// says (`what`: "parameter" or "buffer"); throws if the name is taken.
  void add_initializer(const std::string& name, const ag::Tensor& value, const std::string& what);
  /// A constant an op needs, as a float32 or int64 initializer named `hint`, or `hint_2`, `hint_3`
  /// ... when taken, with doc_string "constant"; returns the name. A value already written as a
  /// constant is not written again: its name is returned.
  std::string add_constant(const std::string& hint, const ag::Tensor& value);
  std::string add_constant(const std::string& hint, const std::vector<std::int64_t>& values);
  /// A node computing `output` from `inputs`, named after its output.
  onnx::NodeProto& add_node(const std::string& op_type, const std::vector<std::string>& inputs,
                            const std::string& output);

 private:
  std::string add_constant(const std::string& hint, onnx::TensorProto tensor);
  std::string unique_name(const std::string& hint);

  onnx::GraphProto& graph_;
  std::set<std::string> names_;                   // of initializers
  std::map<std::string, std::string> constants_;  // a constant's serialised value -> its name
};

void set_attribute(onnx::NodeProto& node, const std::string& name, std::int64_t value);
void set_attribute(onnx::NodeProto& node, const std::string& name, const std::vector<std::int64_t>& values);

/// Writes the ONNX nodes (and the constants they need) that compute one of our ops.
using OnnxForm = void (*)(const TracedOp& op, OnnxGraph& graph);

/// The ONNX form of our op `op` ("conv2d" -> Conv), or null when it has none.
OnnxForm onnx_form_of(std::string_view op);

}  // namespace nn::onnx_export
