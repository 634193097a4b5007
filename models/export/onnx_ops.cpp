// Our ops in ONNX (opset 17): one function per op, or one line where the op is a single ONNX op
// with the same inputs; the table at the end. An op missing from it has no ONNX form: the losses
// (they need targets), dropout in training mode, and the fused kernels (traces run unfused).
#include <stdexcept>
#include <string>
#include <utility>

#include "models/export/onnx_graph.hpp"

namespace nn::onnx_export {

namespace {

// x:[N,Cin,H,W]  w:[Cout,Cin,KH,KW]  b:[Cout] -> Conv, padded alike on all four sides. With a
// connection table, w times the table as [Cout,Cin,1,1] first (ONNX's Conv has groups, not tables).
void conv2d(const TracedOp& op, OnnxGraph& graph) {
  const std::int64_t stride = op.integer("stride"), padding = op.integer("padding");
  const ag::Shape& w = op.input_shapes.at(1).sizes;
  std::vector<std::string> inputs = op.inputs;
  if (op.has("connections")) {
    const ag::OpAttribute::Integers& table = op.integers("connections");
    const std::vector<double> connected(table.begin(), table.end());
    const std::string mask =
        graph.add_constant(op.output + ".connections", ag::Tensor::from({w[0], w[1], 1, 1}, connected));
    inputs[1] = op.output + ".connected_weight";
    graph.add_node("Mul", {op.inputs.at(1), mask}, inputs[1]);
  }
  onnx::NodeProto& node = graph.add_node("Conv", inputs, op.output);
  set_attribute(node, "kernel_shape", {w[2], w[3]});
  set_attribute(node, "strides", {stride, stride});
  set_attribute(node, "pads", {padding, padding, padding, padding});
}

// Square windows without padding: MaxPool and AveragePool take the same attributes.
void pool(const TracedOp& op, OnnxGraph& graph, const std::string& onnx_op) {
  const std::int64_t kernel = op.integer("kernel"), stride = op.integer("stride");
  onnx::NodeProto& node = graph.add_node(onnx_op, op.inputs, op.output);
  set_attribute(node, "kernel_shape", {kernel, kernel});
  set_attribute(node, "strides", {stride, stride});
}
void max_pool2d(const TracedOp& op, OnnxGraph& graph) { pool(op, graph, "MaxPool"); }
void avg_pool2d(const TracedOp& op, OnnxGraph& graph) { pool(op, graph, "AveragePool"); }

// y = amplitude * tanh(slope * x).
void scaled_tanh(const TracedOp& op, OnnxGraph& graph) {
  const std::string slope = graph.add_constant(op.output + ".slope", ag::Tensor::full({}, op.real("slope")));
  const std::string amplitude =
      graph.add_constant(op.output + ".amplitude", ag::Tensor::full({}, op.real("amplitude")));
  graph.add_node("Mul", {op.inputs.at(0), slope}, op.output + ".scaled");
  graph.add_node("Tanh", {op.output + ".scaled"}, op.output + ".tanh");
  graph.add_node("Mul", {op.output + ".tanh", amplitude}, op.output);
}

// x:[N,C,H,W]  weight:[C]  bias:[C] (optional) -> weight[c] * (the sum of each window) + bias[c]:
// AveragePool times the window's area, then the per-map coefficient and bias as [C,1,1].
void subsampling2d(const TracedOp& op, OnnxGraph& graph) {
  const std::int64_t kernel = op.integer("kernel"), stride = op.integer("stride");
  const std::int64_t channels = op.input_shapes.at(1).sizes.at(0);
  onnx::NodeProto& pool = graph.add_node("AveragePool", {op.inputs.at(0)}, op.output + ".mean");
  set_attribute(pool, "kernel_shape", {kernel, kernel});
  set_attribute(pool, "strides", {stride, stride});
  const std::string area =
      graph.add_constant(op.output + ".area", ag::Tensor::full({}, static_cast<double>(kernel * kernel)));
  graph.add_node("Mul", {op.output + ".mean", area}, op.output + ".sum");
  const std::string per_map = graph.add_constant(op.output + ".per_map", std::vector<std::int64_t>{channels, 1, 1});
  graph.add_node("Reshape", {op.inputs.at(1), per_map}, op.output + ".weight");
  const bool has_bias = op.inputs.size() > 2;
  graph.add_node("Mul", {op.output + ".sum", op.output + ".weight"}, has_bias ? op.output + ".scaled" : op.output);
  if (!has_bias) return;
  graph.add_node("Reshape", {op.inputs.at(2), per_map}, op.output + ".bias");
  graph.add_node("Add", {op.output + ".scaled", op.output + ".bias"}, op.output);
}

// x:[N,D]  c:[M,D] -> y[n,m] = sum_j (x[n,j] - c[m,j])^2, through [N,1,D] - [1,M,D].
void squared_distances(const TracedOp& op, OnnxGraph& graph) {
  const std::string x_axes = graph.add_constant(op.output + ".x_axes", std::vector<std::int64_t>{1});
  const std::string c_axes = graph.add_constant(op.output + ".c_axes", std::vector<std::int64_t>{0});
  graph.add_node("Unsqueeze", {op.inputs.at(0), x_axes}, op.output + ".x");
  graph.add_node("Unsqueeze", {op.inputs.at(1), c_axes}, op.output + ".c");
  graph.add_node("Sub", {op.output + ".x", op.output + ".c"}, op.output + ".difference");
  graph.add_node("Mul", {op.output + ".difference", op.output + ".difference"}, op.output + ".square");
  const std::string sum_axes = graph.add_constant(op.output + ".axes", std::vector<std::int64_t>{2});
  set_attribute(graph.add_node("ReduceSum", {op.output + ".square", sum_axes}, op.output), "keepdims",
                std::int64_t{0});
}

// x:[N,C,H,W] -> [N,C,H+2p,W+2p] filled with value: Pad's pads run begins then ends, by dimension.
void pad2d(const TracedOp& op, OnnxGraph& graph) {
  const std::int64_t p = op.integer("padding");
  const std::string pads = graph.add_constant(op.output + ".pads", std::vector<std::int64_t>{0, 0, p, p, 0, 0, p, p});
  const std::string value = graph.add_constant(op.output + ".value", ag::Tensor::full({}, op.real("value")));
  graph.add_node("Pad", {op.inputs.at(0), pads, value}, op.output);
}

// The result's shape is the target, with the batch left free: a size that grows with the batch
// becomes 0 (copy the input's size) where the input has the same size at the same place, and -1
// (inferred from the element count) otherwise, which ONNX allows once.
void reshape(const TracedOp& op, OnnxGraph& graph) {
  const TracedShape& in = op.input_shapes.at(0);
  const TracedShape& out = op.output_shape;
  std::vector<std::int64_t> target;
  int inferred = 0;
  for (std::size_t d = 0; d < out.sizes.size(); ++d) {
    if (!out.batch[d]) {
      // Reshape reads a 0 as "copy the input's size".
      if (out.sizes[d] == 0) throw std::invalid_argument("reshape to " + ag::shape_str(out.sizes) + " has a size 0");
      target.push_back(out.sizes[d]);
    } else if (d < in.sizes.size() && in.batch[d] && in.sizes[d] == out.sizes[d]) {
      target.push_back(0);
    } else {
      target.push_back(-1);
      ++inferred;
    }
  }
  if (inferred > 1)
    throw std::invalid_argument("reshape of " + ag::shape_str(in.sizes) + " to " + ag::shape_str(out.sizes) +
                                " has more than one size that depends on the batch size");
  graph.add_node("Reshape", {op.inputs.at(0), graph.add_constant(op.output + ".shape", target)}, op.output);
}

// y = x w^T + b: Gemm with w transposed.
void linear(const TracedOp& op, OnnxGraph& graph) {
  set_attribute(graph.add_node("Gemm", op.inputs, op.output), "transB", std::int64_t{1});
}

// Without dims, over every element to a 0-d result. ReduceSum takes its axes as an input, the
// other reductions as an attribute (until opset 18).
void sum(const TracedOp& op, OnnxGraph& graph) {
  if (!op.has("dims")) {
    set_attribute(graph.add_node("ReduceSum", op.inputs, op.output), "keepdims", std::int64_t{0});
    return;
  }
  std::vector<std::string> inputs = op.inputs;
  const ag::OpAttribute::Integers& dims = op.integers("dims");
  if (!dims.empty()) inputs.push_back(graph.add_constant(op.output + ".axes", dims));  // none: all
  set_attribute(graph.add_node("ReduceSum", inputs, op.output), "keepdims", op.integer("keepdim"));
}

void mean(const TracedOp& op, OnnxGraph& graph) {
  onnx::NodeProto& node = graph.add_node("ReduceMean", op.inputs, op.output);
  if (!op.has("dims")) {
    set_attribute(node, "keepdims", std::int64_t{0});
    return;
  }
  if (!op.integers("dims").empty()) set_attribute(node, "axes", op.integers("dims"));  // none: all
  set_attribute(node, "keepdims", op.integer("keepdim"));
}

void logsumexp(const TracedOp& op, OnnxGraph& graph) {
  onnx::NodeProto& node = graph.add_node("ReduceLogSumExp", op.inputs, op.output);
  set_attribute(node, "axes", std::vector<std::int64_t>{op.integer("dim")});
  set_attribute(node, "keepdims", op.integer("keepdim"));
}

void softmax(const TracedOp& op, OnnxGraph& graph) {
  set_attribute(graph.add_node("Softmax", op.inputs, op.output), "axis", op.integer("dim"));
}
void log_softmax(const TracedOp& op, OnnxGraph& graph) {
  set_attribute(graph.add_node("LogSoftmax", op.inputs, op.output), "axis", op.integer("dim"));
}

// The permutation that swaps dim0 and dim1 (negative ones count from the end).
void transpose(const TracedOp& op, OnnxGraph& graph) {
  const auto rank = static_cast<std::int64_t>(op.input_shapes.at(0).sizes.size());
  const auto wrap = [rank](std::int64_t d) { return d < 0 ? d + rank : d; };
  std::vector<std::int64_t> permutation;
  for (std::int64_t d = 0; d < rank; ++d) permutation.push_back(d);
  if (rank > 0) std::swap(permutation.at(wrap(op.integer("dim0"))), permutation.at(wrap(op.integer("dim1"))));
  set_attribute(graph.add_node("Transpose", op.inputs, op.output), "perm", permutation);
}

void cat(const TracedOp& op, OnnxGraph& graph) {
  set_attribute(graph.add_node("Concat", op.inputs, op.output), "axis", op.integer("dim"));
}

// The exponent becomes a 0-d float32 constant.
void pow(const TracedOp& op, OnnxGraph& graph) {
  const std::string exponent = graph.add_constant(op.output + ".exponent", ag::Tensor::full({}, op.real("exponent")));
  graph.add_node("Pow", {op.inputs.at(0), exponent}, op.output);
}

// Ops that are one ONNX op of the same inputs, with no attribute: add -> Add.
template <const char* OnnxOp>
void same_inputs(const TracedOp& op, OnnxGraph& graph) {
  graph.add_node(OnnxOp, op.inputs, op.output);
}
constexpr char kAdd[] = "Add", kSub[] = "Sub", kMul[] = "Mul", kDiv[] = "Div", kNeg[] = "Neg", kExp[] = "Exp",
               kLog[] = "Log", kRelu[] = "Relu", kTanh[] = "Tanh", kSigmoid[] = "Sigmoid", kMatMul[] = "MatMul";

const std::pair<std::string_view, OnnxForm> kForms[] = {
    {"add", same_inputs<kAdd>},
    {"sub", same_inputs<kSub>},
    {"mul", same_inputs<kMul>},
    {"div", same_inputs<kDiv>},
    {"neg", same_inputs<kNeg>},
    {"exp", same_inputs<kExp>},
    {"log", same_inputs<kLog>},
    {"pow", pow},
    {"relu", same_inputs<kRelu>},
    {"tanh", same_inputs<kTanh>},
    {"scaled_tanh", scaled_tanh},
    {"sigmoid", same_inputs<kSigmoid>},
    {"softmax", softmax},
    {"log_softmax", log_softmax},
    {"sum", sum},
    {"mean", mean},
    {"logsumexp", logsumexp},
    {"matmul", same_inputs<kMatMul>},
    {"linear", linear},
    {"conv2d", conv2d},
    {"max_pool2d", max_pool2d},
    {"avg_pool2d", avg_pool2d},
    {"subsampling2d", subsampling2d},
    {"squared_distances", squared_distances},
    {"pad2d", pad2d},
    {"reshape", reshape},
    {"transpose", transpose},
    {"cat", cat},
};

}  // namespace

OnnxForm onnx_form_of(std::string_view op) {
  for (const auto& [name, form] : kForms)
    if (name == op) return form;
  return nullptr;
}

}  // namespace nn::onnx_export
