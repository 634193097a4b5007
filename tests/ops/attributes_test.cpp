// Every op with arguments besides its inputs records them under an AttributeGuard, as the ONNX
// exporter (models/export/onnx_ops.cpp) reads them: names, types and values, pooling's stride 0
// resolved to the kernel.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <variant>

#include "ops/fusion/fusion.hpp"
#include "ops/ops.hpp"

using namespace ag;

namespace {

// "name=value ..." of the attributes recorded on y's node; "(none)" when there are none.
std::string attributes_of(const Variable& y) {
  const OpAttributes* attributes = y.node()->attributes.get();
  if (!attributes) return "(none)";
  std::string text;
  for (const OpAttribute& attribute : *attributes) {
    if (!text.empty()) text += ' ';
    text += std::string(attribute.name) + '=';
    if (const auto* i = std::get_if<std::int64_t>(&attribute.value)) text += std::to_string(*i);
    else if (const auto* d = std::get_if<double>(&attribute.value)) text += std::to_string(*d);
    else text += shape_str(Shape(std::get<OpAttribute::Integers>(attribute.value).begin(),
                                 std::get<OpAttribute::Integers>(attribute.value).end()));
  }
  return text;
}

}  // namespace

TEST(OpAttributes, EachOpRecordsItsArgumentsUnderTheGuard) {
  const NoFusionGuard unfused;  // conv2d computed at once, as the exporter traces it
  const AttributeGuard guard;
  Generator gen(1);
  const Variable x(Tensor::normal({2, 3, 6, 6}, 0, 1, gen), /*requires_grad=*/true, "x");
  const Variable w(Tensor::normal({4, 3, 3, 3}, 0, 1, gen), /*requires_grad=*/true, "w");
  const Variable m(Tensor::normal({2, 5}, 0, 1, gen), /*requires_grad=*/true, "m");
  const std::pair<Variable, std::string> cases[] = {
      {conv2d(x, w, Variable{}, 2, 1), "stride=2 padding=1"},
      {max_pool2d(x, 3), "kernel=3 stride=3"},
      {avg_pool2d(x, 2, 1), "kernel=2 stride=1"},
      {pad2d(x, 2, -0.1), "padding=2 value=-0.100000"},
      {pow(x, 3), "exponent=3.000000"},
      {sum(x, {1, -1}, true), "dims=[1, -1] keepdim=1"},
      {mean(x, {0}), "dims=[0] keepdim=0"},
      {logsumexp(m, 1), "dim=1 keepdim=0"},
      {softmax(m, -1), "dim=-1"},
      {log_softmax(m, 1), "dim=1"},
      {transpose(m, 0, 1), "dim0=0 dim1=1"},
      {cat({m, m}, 1), "dim=1"},
      {relu(x), "(none)"},
      {sum(x), "(none)"},
      {reshape(x, {2, -1}), "(none)"},  // the target is the result's shape
  };
  for (const auto& [y, expected] : cases) EXPECT_EQ(attributes_of(y), expected) << y.node()->op;
}

TEST(OpAttributes, NoneAreRecordedWithoutTheGuard) {
  Generator gen(1);
  const Variable x(Tensor::normal({1, 1, 4, 4}, 0, 1, gen), /*requires_grad=*/true, "x");
  EXPECT_EQ(max_pool2d(x, 2).node()->attributes, nullptr);
  EXPECT_EQ(pad2d(x, 1, 0.0).node()->attributes, nullptr);
}
