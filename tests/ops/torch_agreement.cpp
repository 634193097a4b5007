// Every op of the catalogue on fixed random float64 inputs, written out for PyTorch to check: for
// each case, the inputs, the output, a random output gradient and the gradient of every input, as one
// JSON document. tests/ops/torch_agreement.py computes the same cases in PyTorch and compares
// (meson test 'pytorch-ops').
//   torch_agreement [OUT.json]      (stdout without an argument)
#include <cstdint>
#include <exception>
#include <fstream>
#include <functional>
#include <iostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ops/ops.hpp"

namespace {

using namespace ag;
using nlohmann::json;
using Inputs = std::vector<Variable>;
using Targets = std::span<const std::int64_t>;

/// One input: its shape and the range its values are drawn from, uniformly. A range keeps an
/// input away from poles and from where an op is not defined (positive for log, divisors and
/// fractional powers). Kinks (relu at 0) and ties in a max_pool2d window need no care: float64
/// draws from a range are 0, or equal to one another, with probability ~2^-53; where relu's zeros
/// tie in a window, every candidate's gradient is 0 whichever wins.
struct Input {
  Shape shape;
  double low = -1;
  double high = 1;
};

Input positive(Shape shape) { return {std::move(shape), 0.5, 2.0}; }

/// y, after checking that the op which made it is `op`: that a chain really ran fused.
Variable made_by(const Variable& y, std::string_view op) {
  if (y.node()->op != op)
    throw std::runtime_error("made by " + std::string(y.node()->op) + ", not " + std::string(op));
  return y;
}

struct Case {
  std::string name;                   // the key of its PyTorch counterpart in torch_agreement.py
  std::vector<Input> inputs;          // each one requires grad
  std::vector<std::int64_t> targets;  // class indices, for the losses
  std::function<Variable(const Inputs& x, Targets targets)> build;
};

// clang-format off
const std::vector<Case> cases = {
  // Arithmetic, with broadcasting.
  {"add", {{{2, 3}}, {{2, 3}}}, {},
   [](const Inputs& x, Targets) { return add(x[0], x[1]); }},
  {"add_broadcast_row", {{{4, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return add(x[0], x[1]); }},
  {"add_broadcast_channels", {{{2, 3, 4, 5}}, {{3, 1, 1}}}, {},
   [](const Inputs& x, Targets) { return add(x[0], x[1]); }},
  {"sub", {{{2, 3}}, {{2, 3}}}, {},
   [](const Inputs& x, Targets) { return sub(x[0], x[1]); }},
  {"sub_broadcast_both", {{{4, 1}}, {{2, 1, 3}}}, {},
   [](const Inputs& x, Targets) { return sub(x[0], x[1]); }},
  {"mul", {{{2, 3}}, {{2, 3}}}, {},
   [](const Inputs& x, Targets) { return mul(x[0], x[1]); }},
  {"mul_broadcast_3d", {{{2, 3, 4}}, {{3, 1}}}, {},
   [](const Inputs& x, Targets) { return mul(x[0], x[1]); }},
  {"mul_broadcast_both", {{{3, 1, 4}}, {{2, 1}}}, {},
   [](const Inputs& x, Targets) { return mul(x[0], x[1]); }},
  {"mul_by_0d", {{{2, 3}}, {{}}}, {},
   [](const Inputs& x, Targets) { return mul(x[0], x[1]); }},
  {"mul_same_input", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return mul(x[0], x[0]); }},
  {"div", {{{2, 3}}, positive({2, 3})}, {},
   [](const Inputs& x, Targets) { return div(x[0], x[1]); }},
  {"div_broadcast_3d", {{{2, 3, 4}}, positive({3, 1})}, {},
   [](const Inputs& x, Targets) { return div(x[0], x[1]); }},
  {"div_broadcast_numerator", {{{4}}, positive({3, 1})}, {},
   [](const Inputs& x, Targets) { return div(x[0], x[1]); }},
  {"neg", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return neg(x[0]); }},
  {"exp", {{{2, 3}, -2, 2}}, {},
   [](const Inputs& x, Targets) { return exp(x[0]); }},
  {"log", {positive({2, 3})}, {},
   [](const Inputs& x, Targets) { return log(x[0]); }},
  {"pow_2", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return pow(x[0], 2.0); }},
  {"pow_3", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return pow(x[0], 3.0); }},
  {"pow_0", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return pow(x[0], 0.0); }},
  {"pow_half", {positive({2, 3})}, {},
   [](const Inputs& x, Targets) { return pow(x[0], 0.5); }},
  {"pow_minus_1_5", {positive({2, 3})}, {},
   [](const Inputs& x, Targets) { return pow(x[0], -1.5); }},

  // The operators, with Variables and with doubles on either side.
  {"operator_add", {{{2, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return x[0] + x[1]; }},
  {"operator_sub", {{{2, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return x[0] - x[1]; }},
  {"operator_mul", {{{2, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return x[0] * x[1]; }},
  {"operator_div", {{{2, 3}}, positive({3})}, {},
   [](const Inputs& x, Targets) { return x[0] / x[1]; }},
  {"operator_neg", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return -x[0]; }},
  {"operator_times_2", {{{2, 3}}}, {},
   [](const Inputs& x, Targets) { return x[0] * 2.0; }},
  {"operator_with_doubles", {{{2, 3}}, positive({2, 3})}, {},
   [](const Inputs& x, Targets) {
     return (x[0] + 1.0) / 2.0 - 3.0 / x[1] + (2.0 - x[0]) * 0.5 + 0.25 * x[1] - x[1] / 4.0 - 1.0;
   }},
  // LeCun's scaled tanh (the 1998 LeNet-5's squashing function).
  {"operator_scaled_tanh", {{{2, 3}, -2, 2}}, {},
   [](const Inputs& x, Targets) { return 1.7159 * tanh(x[0] * (2.0 / 3)); }},

  // Reductions.
  {"sum", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0]); }},
  {"mean", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0]); }},
  {"sum_dim1", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {1}); }},
  {"sum_dim1_keepdim", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {1}, /*keepdim=*/true); }},
  {"sum_dims_0_2", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {0, 2}); }},
  {"sum_dims_0_2_keepdim", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {0, 2}, /*keepdim=*/true); }},
  {"sum_dim_last", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {-1}); }},
  {"sum_dims_4d_keepdim", {{{2, 3, 2, 3}}}, {},
   [](const Inputs& x, Targets) { return sum(x[0], {-1, 1}, /*keepdim=*/true); }},
  {"mean_dim1", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {1}); }},
  {"mean_dim1_keepdim", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {1}, /*keepdim=*/true); }},
  {"mean_dims_0_2", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {0, 2}); }},
  {"mean_dims_0_2_keepdim", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {0, 2}, /*keepdim=*/true); }},
  {"mean_dim_last", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {-1}); }},
  {"mean_dim_last_keepdim", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return mean(x[0], {-1}, /*keepdim=*/true); }},
  {"logsumexp_dim1", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return logsumexp(x[0], 1); }},
  {"logsumexp_dim0_keepdim", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return logsumexp(x[0], 0, /*keepdim=*/true); }},
  {"logsumexp_3d_last", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return logsumexp(x[0], -1); }},
  // Values near 750, whose exp() overflows a double: the maximum must be subtracted first.
  {"logsumexp_large", {{{3, 4}, 750, 755}}, {},
   [](const Inputs& x, Targets) { return logsumexp(x[0], 1); }},

  // Activations.
  {"relu", {{{3, 4, 5}}}, {},
   [](const Inputs& x, Targets) { return relu(x[0]); }},
  {"tanh", {{{3, 4}, -3, 3}}, {},
   [](const Inputs& x, Targets) { return tanh(x[0]); }},
  {"scaled_tanh", {{{3, 4}, -3, 3}}, {},
   [](const Inputs& x, Targets) { return scaled_tanh(x[0], 1.7159, 2.0 / 3); }},
  {"sigmoid", {{{3, 4}, -5, 5}}, {},
   [](const Inputs& x, Targets) { return sigmoid(x[0]); }},

  // Matrix products.
  {"matmul", {{{3, 4}}, {{4, 5}}}, {},
   [](const Inputs& x, Targets) { return matmul(x[0], x[1]); }},
  {"linear", {{{3, 4}}, {{5, 4}}, {{5}}}, {},
   [](const Inputs& x, Targets) { return linear(x[0], x[1], x[2]); }},
  {"linear_no_bias", {{{3, 4}}, {{5, 4}}}, {},
   [](const Inputs& x, Targets) { return linear(x[0], x[1]); }},

  // Convolution: x:[N, Cin, H, W]  w:[Cout, Cin, KH, KW]  b:[Cout].
  {"conv2d", {{{2, 3, 7, 6}}, {{4, 3, 3, 3}}, {{4}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1], x[2]); }},
  {"conv2d_no_bias", {{{2, 3, 7, 6}}, {{4, 3, 3, 3}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1]); }},
  {"conv2d_stride2", {{{2, 2, 8, 7}}, {{3, 2, 3, 2}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1], x[2], /*stride=*/2); }},
  {"conv2d_padding2", {{{2, 2, 5, 6}}, {{3, 2, 5, 5}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1], x[2], /*stride=*/1, /*padding=*/2); }},
  {"conv2d_stride2_padding2", {{{2, 2, 7, 8}}, {{3, 2, 3, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1], x[2], /*stride=*/2, /*padding=*/2); }},
  // A kernel over the whole input: one product over the batch (the 1998 LeNet-5's C5).
  {"conv2d_whole_input", {{{3, 4, 5, 5}}, {{6, 4, 5, 5}}, {{6}}}, {},
   [](const Inputs& x, Targets) { return conv2d(x[0], x[1], x[2]); }},

  // Squared distances from rows to prototypes (the 1998 LeNet-5's RBF units).
  {"squared_distances", {{{4, 6}}, {{3, 6}}}, {},
   [](const Inputs& x, Targets) { return squared_distances(x[0], x[1]); }},

  // Pooling.
  {"max_pool2d_2x2", {{{2, 3, 6, 8}}}, {},
   [](const Inputs& x, Targets) { return max_pool2d(x[0], 2); }},
  {"max_pool2d_3x3_stride2", {{{2, 3, 9, 8}}}, {},
   [](const Inputs& x, Targets) { return max_pool2d(x[0], 3, /*stride=*/2); }},
  {"avg_pool2d_2x2", {{{2, 3, 6, 8}}}, {},
   [](const Inputs& x, Targets) { return avg_pool2d(x[0], 2); }},
  // Overlapping windows: an element's gradient sums the shares of every window it is in.
  {"avg_pool2d_3x3_stride2", {{{2, 3, 9, 8}}}, {},
   [](const Inputs& x, Targets) { return avg_pool2d(x[0], 3, /*stride=*/2); }},
  {"avg_pool2d_3x3_stride1", {{{1, 2, 5, 6}}}, {},
   [](const Inputs& x, Targets) { return avg_pool2d(x[0], 3, /*stride=*/1); }},
  {"subsampling2d_2x2", {{{2, 3, 6, 8}}, {{3}}, {{3}}}, {},
   [](const Inputs& x, Targets) { return subsampling2d(x[0], x[1], x[2], 2); }},
  {"subsampling2d_3x3_stride2_no_bias", {{{2, 2, 9, 8}}, {{2}}}, {},
   [](const Inputs& x, Targets) { return subsampling2d(x[0], x[1], Variable{}, 3, /*stride=*/2); }},

  // Softmax family.
  {"softmax_dim1", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return softmax(x[0], 1); }},
  {"softmax_dim0", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return softmax(x[0], 0); }},
  {"softmax_3d_middle", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return softmax(x[0], -2); }},
  {"log_softmax_dim1", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return log_softmax(x[0], 1); }},
  {"log_softmax_dim0", {{{4, 5}}}, {},
   [](const Inputs& x, Targets) { return log_softmax(x[0], 0); }},
  {"log_softmax_3d_last", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return log_softmax(x[0], -1); }},

  // Losses.
  {"nll_loss", {{{5, 4}}}, {3, 0, 1, 3, 2},
   [](const Inputs& x, Targets t) { return nll_loss(x[0], t); }},
  {"nll_loss_of_log_softmax", {{{5, 4}}}, {2, 2, 0, 1, 3},
   [](const Inputs& x, Targets t) { return nll_loss(log_softmax(x[0], 1), t); }},
  {"cross_entropy", {{{5, 4}}}, {1, 0, 3, 3, 2},
   [](const Inputs& x, Targets t) { return cross_entropy(x[0], t); }},
  // Logits near 750, whose exp() overflows a double: the maximum must be subtracted first.
  {"cross_entropy_large_logits", {{{3, 4}, 750, 755}}, {0, 3, 2},
   [](const Inputs& x, Targets t) { return cross_entropy(x[0], t); }},

  // Dropout draws its mask from our Generator, which PyTorch cannot reproduce: only its
  // deterministic cases are compared, evaluation (identity) and p = 1 (all dropped).
  {"dropout_eval", {{{3, 4}}}, {},
   [](const Inputs& x, Targets) {
     Generator generator(7);
     return dropout(x[0], 0.5, /*training=*/false, generator);
   }},
  {"dropout_p1_training", {{{3, 4}}}, {},
   [](const Inputs& x, Targets) {
     Generator generator(7);
     return dropout(x[0], 1.0, /*training=*/true, generator);
   }},

  // Shape ops.
  {"reshape", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return reshape(x[0], {4, -1}); }},
  {"flatten", {{{2, 3, 2, 2}}}, {},
   [](const Inputs& x, Targets) { return flatten(x[0]); }},
  {"flatten_start2", {{{2, 3, 2, 2}}}, {},
   [](const Inputs& x, Targets) { return flatten(x[0], 2); }},
  {"cat_dim0", {{{2, 3}}, {{1, 3}}, {{3, 3}}}, {},
   [](const Inputs& x, Targets) { return cat({x[0], x[1], x[2]}, 0); }},
  {"cat_dim1", {{{2, 1, 4}}, {{2, 3, 4}}, {{2, 2, 4}}}, {},
   [](const Inputs& x, Targets) { return cat({x[0], x[1], x[2]}, 1); }},
  {"cat_dim_last", {{{2, 3, 1}}, {{2, 3, 2}}, {{2, 3, 3}}}, {},
   [](const Inputs& x, Targets) { return cat({x[0], x[1], x[2]}, -1); }},
  {"transpose_3d", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return transpose(x[0], 0, 2); }},
  {"transpose_3d_adjacent", {{{2, 3, 4}}}, {},
   [](const Inputs& x, Targets) { return transpose(x[0], 1, 2); }},
  {"transpose_4d", {{{2, 3, 4, 5}}}, {},
   [](const Inputs& x, Targets) { return transpose(x[0], 1, 3); }},
  {"transpose_4d_negative", {{{2, 3, 4, 5}}}, {},
   [](const Inputs& x, Targets) { return transpose(x[0], -1, -2); }},

  // Chains. conv2d -> relu -> max_pool2d runs fused by default (ops/fusion/fusion.hpp).
  {"conv2d_relu_max_pool2d_fused", {{{2, 2, 8, 8}}, {{3, 2, 3, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) {
     Variable y = max_pool2d(relu(conv2d(x[0], x[1], x[2], /*stride=*/1, /*padding=*/1)), 2);
     return made_by(y, "conv2d+relu+max_pool2d");
   }},
  {"conv2d_max_pool2d_fused", {{{2, 2, 9, 9}}, {{3, 2, 3, 3}}, {{3}}}, {},
   [](const Inputs& x, Targets) {
     Variable y = max_pool2d(conv2d(x[0], x[1], x[2], /*stride=*/2, /*padding=*/2), 3, /*stride=*/2);
     return made_by(y, "conv2d+max_pool2d");
   }},
  // conv2d -> scaled_tanh -> subsampling2d runs fused (the 1998 LeNet-5's C1 and S2).
  {"conv2d_scaled_tanh_subsampling2d_fused", {{{2, 2, 8, 8}}, {{4, 2, 3, 3}}, {{4}}, {{4}}, {{4}}}, {},
   [](const Inputs& x, Targets) {
     Variable y = subsampling2d(scaled_tanh(conv2d(x[0], x[1], x[2]), 1.7159, 2.0 / 3), x[3], x[4], 2);
     return made_by(y, "conv2d+scaled_tanh+subsampling2d");
   }},
  // A tiny 2-layer net, x:[2, 1, 6, 6]  w1:[3, 1, 3, 3]  b1:[3]  w2:[4, 12]  b2:[4].
  {"two_layer_net", {{{2, 1, 6, 6}}, {{3, 1, 3, 3}}, {{3}}, {{4, 12}}, {{4}}}, {3, 1},
   [](const Inputs& x, Targets t) {
     Variable h = tanh(conv2d(x[0], x[1], x[2]));  // [2, 3, 4, 4]
     h = flatten(avg_pool2d(h, 2));                 // [2, 12]
     return cross_entropy(linear(h, x[3], x[4]), t);
   }},
};
// clang-format on

json tensor_json(const Tensor& t) {
  return {{"shape", t.shape()}, {"values", t.to_vector()}};
}

/// The case run on inputs drawn from a generator of its own, `seed`: the inputs, the output, the
/// output gradient (drawn after the inputs, N(0, 1)) and each input's gradient, or the error.
json run(const Case& c, std::uint64_t seed) {
  json out = {{"name", c.name}, {"targets", c.targets}};
  Generator gen(seed);
  Inputs inputs;
  json inputs_json = json::array();
  for (const Input& in : c.inputs) {
    inputs.emplace_back(Tensor::uniform(in.shape, in.low, in.high, gen, DType::Float64), true);
    inputs_json.push_back(tensor_json(inputs.back().value()));
  }
  out["inputs"] = inputs_json;
  try {
    Variable y = c.build(inputs, c.targets);
    Tensor grad_output = Tensor::normal(y.shape(), 0, 1, gen, DType::Float64);
    out["output"] = tensor_json(y.value());
    out["grad_output"] = tensor_json(grad_output);
    y.backward(grad_output);
    json grads = json::array();
    for (const Variable& x : inputs)  // null where no gradient arrived: the checker reports it
      grads.push_back(x.has_grad() ? tensor_json(x.grad()) : json(nullptr));
    out["grads"] = grads;
  } catch (const std::exception& e) {  // reported by the checker as this case's failure
    out["error"] = e.what();
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  json results = json::array();
  for (std::size_t i = 0; i < cases.size(); ++i) results.push_back(run(cases[i], /*seed=*/1000 + i));
  const std::string text = json{{"dtype", "float64"}, {"cases", results}}.dump() + "\n";
  if (argc > 1) {
    std::ofstream file(argv[1]);
    file << text;
    return file ? 0 : 1;
  }
  std::cout << text;
  return std::cout ? 0 : 1;
}
