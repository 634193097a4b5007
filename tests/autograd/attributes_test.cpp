// Op attributes (autograd/variable.hpp): recorded by with_attributes only while an AttributeGuard
// is alive, its describe function not even called otherwise; the guard nests; the DOT picture
// shows what was recorded.
#include <gtest/gtest.h>

#include <string>

#include "autograd/dot.hpp"
#include "autograd/variable.hpp"

using namespace ag;

namespace {

int describe_calls = 0;

// y = x, recorded as "scale" with attributes of every kind.
Variable scale(const Variable& x) {
  return with_attributes(record(x.value().clone(), "scale", {x},
                                [](const Tensor& dy, const GradMask&) { return TensorList{dy}; }),
                         [&] {
                           ++describe_calls;
                           return OpAttributes{{"stride", 2}, {"value", -0.1}, {"dims", Shape{1, 2}}, {"keepdim", true}};
                         });
}

}  // namespace

TEST(AttributeGuard, OpsRecordAttributesOnlyWhileItIsAlive) {
  const Variable x(Tensor::ones({2}), /*requires_grad=*/true, "x");
  describe_calls = 0;
  EXPECT_EQ(scale(x).node()->attributes, nullptr);
  EXPECT_EQ(describe_calls, 0) << "nothing is built for them without the guard";
  {
    const AttributeGuard guard;
    const Variable y = scale(x);
    ASSERT_NE(y.node()->attributes, nullptr);
    const OpAttributes& attributes = *y.node()->attributes;
    ASSERT_EQ(attributes.size(), 4u);
    EXPECT_EQ(attributes[0].name, "stride");
    EXPECT_EQ(std::get<std::int64_t>(attributes[0].value), 2);
    EXPECT_EQ(std::get<double>(attributes[1].value), -0.1);
    EXPECT_EQ(std::get<OpAttribute::Integers>(attributes[2].value), (OpAttribute::Integers{1, 2}));
    EXPECT_EQ(std::get<std::int64_t>(attributes[3].value), 1);
    {
      const AttributeGuard nested;
      EXPECT_TRUE(attributes_enabled());
    }
    EXPECT_TRUE(attributes_enabled()) << "a nested guard restores the outer one's mode";
  }
  EXPECT_FALSE(attributes_enabled());
  EXPECT_EQ(describe_calls, 1);
}

TEST(AttributeGuard, AnOpWithoutANodeRecordsNothing) {
  const AttributeGuard guard;
  describe_calls = 0;
  const Variable constant(Tensor::ones({2}));  // no input requires grad: no node
  EXPECT_TRUE(scale(constant).is_leaf());
  EXPECT_EQ(describe_calls, 0);
}

TEST(Dot, ShowsTheAttributesRecorded) {
  const Variable x(Tensor::ones({2}), /*requires_grad=*/true, "x");
  EXPECT_EQ(to_dot(scale(x)).find("stride="), std::string::npos);
  const AttributeGuard guard;
  EXPECT_NE(to_dot(scale(x)).find("scale\\n[2]\\nstride=2 value=-0.1 dims=[1, 2] keepdim=1"), std::string::npos)
      << to_dot(scale(x));
}
