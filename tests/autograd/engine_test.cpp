// The engine on its own, with tiny ops defined here through record(): traversal order, gradient
// accumulation, graph release, no-grad, the 100,000-node chain, and saved tensors modified in
// place.
#include "autograd/engine.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "autograd/variable.hpp"

using namespace ag;

namespace {

// y = c * x, elementwise.
Variable scale(const Variable& x, double c) {
  Tensor y = x.value().clone();
  for (std::int64_t i = 0; i < y.numel(); ++i) y.set(i, c * y.at(i));
  return record(std::move(y), "scale", {x}, [c](const Tensor& dy, const GradMask&) {
    Tensor dx = dy.clone();
    for (std::int64_t i = 0; i < dx.numel(); ++i) dx.set(i, c * dx.at(i));
    return TensorList{dx};
  });
}

// y = a * b, elementwise, same shapes. Saves both factors.
Variable times(const Variable& a, const Variable& b) {
  Tensor y = a.value().clone();
  for (std::int64_t i = 0; i < y.numel(); ++i) y.set(i, a.value().at(i) * b.value().at(i));
  const SavedTensor saved_a(a.value(), /*input=*/0), saved_b(b.value(), /*input=*/1);
  return record(std::move(y), "times", {a, b},
                [saved_a, saved_b](const Tensor& dy, const GradMask&) {
                  const Tensor &av = saved_a.unpack(), &bv = saved_b.unpack();
                  Tensor da = dy.clone(), db = dy.clone();
                  for (std::int64_t i = 0; i < dy.numel(); ++i) {
                    da.set(i, dy.at(i) * bv.at(i));
                    db.set(i, dy.at(i) * av.at(i));
                  }
                  return TensorList{da, db};
                });
}

// y = exp(x), elementwise; dx = dy * y. Saves its own output.
Variable exponential(const Variable& x) {
  Tensor y = Tensor::empty(x.shape(), DType::Float64);
  for (std::int64_t i = 0; i < y.numel(); ++i) y.data<double>()[i] = std::exp(x.value().at(i));
  const SavedTensor saved_y(y, SavedTensor::kOutput);
  return record(y, "exponential", {x}, [saved_y](const Tensor& dy, const GradMask&) {
    const Tensor& yv = saved_y.unpack();
    Tensor dx = dy.clone();
    for (std::int64_t i = 0; i < dx.numel(); ++i) dx.set(i, dy.at(i) * yv.at(i));
    return TensorList{dx};
  });
}

// The message of the std::invalid_argument that f throws, or "(nothing thrown)".
template <class F>
std::string thrown_message(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(nothing thrown)";
}

Variable scalar(double v, bool requires_grad = true) {
  return Variable(Tensor::full({}, v, DType::Float64), requires_grad);
}

}  // namespace

TEST(Backward, ChainRuleThroughTwoOps) {
  Variable x = scalar(3.0);
  Variable y = scale(times(x, x), 2.0);  // 2 x^2
  y.backward();
  EXPECT_DOUBLE_EQ(y.value().item(), 18.0);
  EXPECT_DOUBLE_EQ(x.grad().item(), 12.0);  // 4 x
}

TEST(Backward, DiamondAccumulatesBothPaths) {
  Variable x = scalar(2.0);
  Variable a = scale(x, 3.0), b = scale(x, 5.0);
  Variable y = times(a, b);  // 15 x^2 -> 30 x
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 60.0);
}

TEST(Backward, LeafGradientsAccumulateAcrossCallsUntilZeroed) {
  Variable x = scalar(1.0);
  scale(x, 4.0).backward();
  scale(x, 4.0).backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 8.0);
  x.zero_grad();
  EXPECT_DOUBLE_EQ(x.grad().item(), 0.0);
}

TEST(Backward, ChainOf100000NodesDoesNotOverflowTheStack) {
  Variable x = scalar(1.0);
  Variable y = x;
  for (int i = 0; i < 100000; ++i) y = scale(y, 1.0);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
  // Destroying the chain must not recurse either (Node's destructor unrolls it).
  y = Variable();
  SUCCEED();
}

TEST(Backward, SecondBackwardThroughFreedGraphThrows) {
  Variable x = scalar(1.0);
  Variable y = scale(x, 2.0);
  y.backward();
  EXPECT_TRUE(y.node()->freed);
  EXPECT_THROW(y.backward(), std::invalid_argument);
}

TEST(Backward, RetainGraphAllowsASecondBackward) {
  Variable x = scalar(1.0);
  Variable y = scale(x, 2.0);
  y.backward(/*retain_graph=*/true);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 4.0);
}

TEST(Backward, NonScalarNeedsAnExplicitGradient) {
  Variable x(Tensor::ones({3}, DType::Float64), true);
  Variable y = scale(x, 2.0);
  EXPECT_THROW(y.backward(), std::invalid_argument);
  y.backward(Tensor::from({3}, {1.0, 2.0, 3.0}, DType::Float64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{2, 4, 6}));
}

TEST(Backward, WrongGradientShapeIsCaughtWhereItHappens) {
  Variable x(Tensor::ones({3}, DType::Float64), true);
  Variable bad = record(x.value().clone(), "bad_op", {x}, [](const Tensor&, const GradMask&) {
    return TensorList{Tensor::ones({2}, DType::Float64)};
  });
  try {
    bad.backward(Tensor::ones({3}, DType::Float64));
    FAIL() << "expected a throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bad_op"), std::string::npos) << e.what();
  }
}

TEST(Backward, OnlyLeavesKeepGradients) {
  Variable x = scalar(1.0);
  Variable h = scale(x, 2.0);
  Variable y = scale(h, 3.0);
  y.backward();
  EXPECT_FALSE(h.has_grad());
  EXPECT_TRUE(x.has_grad());
}

TEST(Backward, FreeingTheGraphReleasesWhatTheForwardSaved) {
  auto saved = std::make_shared<int>(0);  // stands for a saved activation
  std::weak_ptr<int> watch = saved;
  Variable x = scalar(1.0);
  Variable y = record(x.value().clone(), "keeps", {x},
                      [saved](const Tensor& dy, const GradMask&) {
                        return TensorList{dy};
                      });
  saved.reset();
  EXPECT_FALSE(watch.expired());
  y.backward();
  EXPECT_TRUE(watch.expired());
}

TEST(Backward, RetainedGraphKeepsWhatTheForwardSaved) {
  auto saved = std::make_shared<int>(0);
  std::weak_ptr<int> watch = saved;
  Variable x = scalar(1.0);
  Variable y = record(x.value().clone(), "keeps", {x},
                      [saved](const Tensor& dy, const GradMask&) {
                        return TensorList{dy};
                      });
  saved.reset();
  y.backward(/*retain_graph=*/true);
  EXPECT_FALSE(watch.expired());
}

TEST(NoGrad, RecordsNothing) {
  Variable x = scalar(1.0);
  NoGradGuard guard;
  EXPECT_FALSE(grad_enabled());
  Variable y = scale(x, 2.0);
  EXPECT_FALSE(y.requires_grad());
  EXPECT_EQ(y.node(), nullptr);
}

TEST(NoGrad, GuardRestoresThePreviousMode) {
  {
    NoGradGuard outer;
    {
      NoGradGuard inner;
    }
    EXPECT_FALSE(grad_enabled());
  }
  EXPECT_TRUE(grad_enabled());
}

TEST(Detach, CutsTheGraph) {
  Variable x = scalar(1.0);
  Variable y = scale(x, 2.0).detach();
  EXPECT_FALSE(y.requires_grad());
  EXPECT_TRUE(y.is_leaf());
  EXPECT_THROW(y.backward(), std::invalid_argument);
}

TEST(Topology, ConsumersComeBeforeTheirInputs) {
  Variable x = scalar(1.0);
  Variable a = scale(x, 2.0), b = scale(a, 2.0), y = times(a, b);
  auto order = reverse_topological_order(y);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0].id(), y.id());
  EXPECT_EQ(order[3].id(), x.id());
  auto pos = [&](const Variable& v) {
    for (std::size_t i = 0; i < order.size(); ++i)
      if (order[i].id() == v.id()) return i;
    return order.size();
  };
  EXPECT_LT(pos(b), pos(a));
}

TEST(Backward, UndefinedInputSlotIsSkipped) {
  // An op may record an absent optional input (a missing bias) as an undefined Variable.
  Variable x = scalar(2.0);
  Variable y = record(x.value().clone(), "optional_input", {x, Variable()},
                      [](const Tensor& dy, const GradMask& needs) {
                        EXPECT_FALSE(needs[1]);
                        return TensorList{dy, Tensor{}};
                      });
  EXPECT_EQ(reverse_topological_order(y, /*include_constants=*/true).size(), 2u);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

// ---- Saved tensors modified in place ----

TEST(SavedTensor, UnpackGivesTheSavedStorageWhileItIsUnmodified) {
  Tensor t = Tensor::ones({2}, DType::Float64);
  const SavedTensor saved(t, /*input=*/0);
  EXPECT_TRUE(saved.unpack().same_storage(t));  // shared, not copied
  EXPECT_FALSE(SavedTensor().defined());
}

TEST(SavedTensor, UnpackAfterAnInPlaceWriteThrowsWithBothVersions) {
  Tensor t = Tensor::ones({2}, DType::Float64);
  t.fill(2.0);  // version 1 before saving
  const SavedTensor saved(t, /*input=*/1);
  t.reshape({2, 1}).set(0, 3.0);  // through a view: the same counter
  try {
    saved.unpack();
    FAIL() << "expected a throw";
  } catch (const SavedTensorModified& e) {
    EXPECT_EQ(e.input, 1);
    EXPECT_EQ(e.saved_version, 1u);
    EXPECT_EQ(e.current_version, 2u);
  }
}

TEST(SavedTensor, MutableValueCountsAsAWriteAndValueDoesNot) {
  Variable w(Tensor::ones({2}, DType::Float64), true, "w");
  (void)w.value();
  EXPECT_EQ(w.value().version(), 0u);
  w.mutable_value().data<double>()[0] -= 0.5;  // how the optimisers write a parameter
  EXPECT_EQ(w.value().version(), 1u);
}

TEST(SavedTensor, ModifiedSavedInputThrowsNamingOpInputAndVersions) {
  Variable x = scalar(3.0);
  Variable w(Tensor::full({}, 2.0, DType::Float64), true, "fc1.weight");
  Variable y = times(x, w);
  w.mutable_value().data<double>()[0] -= 0.1;  // an optimiser step before backward
  EXPECT_EQ(thrown_message([&] { y.backward(); }),
            "times: input 1 ('fc1.weight'), saved for backward at version 0, was modified in place "
            "since (now version 1); run backward before modifying it, or give the op a clone of "
            "it");
}

TEST(SavedTensor, UnnamedInputIsNamedByItsPosition) {
  Variable x = scalar(3.0), w = scalar(2.0);
  Variable y = times(x, w);
  x.mutable_value().fill(1.0);  // two writes: mutable_value() and fill
  EXPECT_EQ(thrown_message([&] { y.backward(); }),
            "times: input 0, saved for backward at version 0, was modified in place since (now "
            "version 2); run backward before modifying it, or give the op a clone of it");
}

TEST(SavedTensor, ModifiedOutputSavedByItsOpThrows) {
  Variable x = scalar(0.5);
  Variable y = exponential(x);
  y.mutable_value().fill(0.0);
  EXPECT_EQ(thrown_message([&] { y.backward(); }),
            "exponential: its output, saved for backward at version 0, was modified in place "
            "since (now version 2); run backward before modifying it, or modify a clone of it");
}

TEST(SavedTensor, ModifyingAfterBackwardIsFine) {
  Variable x = scalar(3.0), w = scalar(2.0);
  Variable y = times(x, w);
  y.backward();
  w.mutable_value().fill(5.0);
  x.mutable_value().add_(Tensor::ones({}, DType::Float64));
  EXPECT_DOUBLE_EQ(x.grad().item(), 2.0);
  EXPECT_DOUBLE_EQ(w.grad().item(), 3.0);
  times(x, w).backward();  // a new forward saves the new versions
  EXPECT_DOUBLE_EQ(x.grad().item(), 2.0 + 5.0);
}

TEST(SavedTensor, ModifyingAnInputTheOpDoesNotSaveIsFine) {
  // scale saves only its constant factor, so its input may change after the forward.
  Variable x = scalar(3.0);
  Variable y = scale(x, 4.0);
  x.mutable_value().fill(-1.0);
  y.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 4.0);
}

TEST(SavedTensor, RetainedGraphCatchesAModificationBeforeTheSecondBackward) {
  Variable x = scalar(3.0), w(Tensor::full({}, 2.0, DType::Float64), true, "w");
  Variable y = times(x, w);
  y.backward(/*retain_graph=*/true);
  EXPECT_DOUBLE_EQ(x.grad().item(), 2.0);
  w.mutable_value().set(0, 7.0);
  const std::string message = thrown_message([&] { y.backward(); });
  EXPECT_EQ(message.rfind("times: input 1 ('w'), saved for backward at version 0", 0), 0u)
      << message;
}
