// Variable (a tensor that remembers the node that made it), Node (one recorded op on the tape),
// gradient accumulation, and the no-grad guard. The traversal lives in engine.hpp.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "autograd/allocator.hpp"
#include "autograd/tensor.hpp"

namespace ag {

class Variable;
struct Node;

/// A result that an op has not computed yet, so that the op consuming it may fuse both into one
/// kernel (conv2d -> relu -> max_pool2d; see ops/fusion/fusion.hpp). It knows the shape and dtype it will
/// have and how to compute itself the ordinary, unfused way. The first use of the Variable's value
/// or node runs compute() (under the grad mode of the op that deferred it) and from then on the
/// Variable is like any other. A deferred result reads its inputs when it is computed, later than
/// the op was called: a Deferred checks that they were not written in place in between (by their
/// versions, as SavedTensor does) so that the result is the one the op would have computed at once.
class Deferred {
 public:
  Deferred(Shape shape, DType dtype) : shape_(std::move(shape)), dtype_(dtype) {}
  virtual ~Deferred() = default;
  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  /// The value through the unfused ops, recording their nodes as usual.
  virtual Variable compute() const = 0;

 private:
  Shape shape_;
  DType dtype_;
};

/// An op's name as the graph, the DOT export and error messages show it ("conv2d"). It must be a
/// string literal (checked at compile time): a node keeps only the pointer, so recording an op copies
/// no string.
class OpName {
 public:
  consteval OpName(const char* name) : name_(name) {}
  const char* c_str() const { return name_; }

 private:
  const char* name_;
};

/// Short lists: every op but cat has at most five inputs (the fused convolution, scaled tanh and
/// subsampling: x, w, b and the pool's weight and bias), so five are kept inline and a node's input
/// list, its gradients and its mask of wanted gradients take no allocation of their own.
template <class T>
using SmallList = boost::container::small_vector<T, 5>;
using TensorList = SmallList<Tensor>;
/// needs[i]: whether input i of a node wants a gradient.
using GradMask = SmallList<bool>;

/// A closure recorded on the tape: like a move-only std::function returning one tensor per input,
/// except that the closure (the tensors the forward saved) lives in a block of the caching
/// allocator: a training step reuses the blocks of the step before and makes no heap allocation
/// (std::function would allocate every closure larger than two pointers).
template <class... Args>
class TapeFunction {
 public:
  TapeFunction() = default;
  TapeFunction(std::nullptr_t) {}
  template <class Closure>
    requires(!std::is_same_v<std::decay_t<Closure>, TapeFunction> &&
             std::is_invocable_r_v<TensorList, const std::decay_t<Closure>&, Args...>)
  TapeFunction(Closure&& closure) {
    using F = std::decay_t<Closure>;
    static_assert(alignof(F) <= 64, "the caching allocator's blocks are 64-byte aligned");
    void* block = allocate_block(sizeof(F));
    try {
      closure_ = new (block) F(std::forward<Closure>(closure));
    } catch (...) {
      free_block(block, sizeof(F));
      throw;
    }
    call_ = [](const void* f, Args... args) -> TensorList {
      return (*static_cast<const F*>(f))(args...);
    };
    destroy_ = [](void* f) noexcept {
      static_cast<F*>(f)->~F();
      free_block(f, sizeof(F));
    };
  }
  TapeFunction(TapeFunction&& other) noexcept
      : closure_(std::exchange(other.closure_, nullptr)), call_(other.call_),
        destroy_(other.destroy_) {}
  TapeFunction& operator=(TapeFunction&& other) noexcept {
    if (this != &other) {
      reset();
      closure_ = std::exchange(other.closure_, nullptr);
      call_ = other.call_;
      destroy_ = other.destroy_;
    }
    return *this;
  }
  ~TapeFunction() { reset(); }

  explicit operator bool() const { return closure_ != nullptr; }
  TensorList operator()(Args... args) const { return call_(closure_, args...); }
  /// Destroys the closure and what it saved.
  void reset() noexcept {
    if (closure_) destroy_(std::exchange(closure_, nullptr));
  }

 private:
  void* closure_ = nullptr;
  TensorList (*call_)(const void*, Args...) = nullptr;
  void (*destroy_)(void*) noexcept = nullptr;
};

/// An op's backward: given the gradient of its output, return one gradient per input, in input
/// order. `needs[i]` says whether input i wants one; return an undefined Tensor where it does not,
/// so an op can skip work nobody needs (the gradient of the input image, say).
using BackwardFn = TapeFunction<const Tensor&, const GradMask&>;

/// An op's curvature rule, for the curvature pass (engine.hpp): given h, the diagonal of
/// d2E/dy2 for its output y (an estimate, of y's shape), and g = dE/dy, return for each input x
/// the diagonal of d2E/dx2 that the rule propagates, in input order (undefined where `needs` says
/// none is wanted). Off-diagonal terms are dropped, as in LeCun et al. 1998 (appendix C):
///   h_x[k] = sum_j (dy_j/dx_k)^2 h[j] + sum_j g[j] d2y_j/dx_k^2.
/// Activation functions (relu, tanh, sigmoid) keep the first term only, the Gauss-Newton
/// approximation, so that only the criterion's own second derivatives seed the curvature.
using CurvatureFn = TapeFunction<const Tensor&, const Tensor&, const GradMask&>;

/// A Variable is a cheap handle (like torch.Tensor): copies share the value, gradient and node.
/// A leaf is a Variable made by the user (no node); only leaves keep .grad after backward.
class Variable {
 public:
  Variable() = default;  // undefined
  explicit Variable(Tensor value, bool requires_grad = false, std::string name = {});

  /// A Variable whose value `deferred` computes on first use. `requires_grad` is what the deferring
  /// op's result would have had (needs_grad of its inputs); the current grad and curvature modes
  /// are kept for compute().
  static Variable defer(std::shared_ptr<const Deferred> deferred, bool requires_grad);

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const {
    if (impl_->deferred) [[unlikely]] materialize();
    return impl_->value;
  }
  /// Writable access to the value, for optimisers updating parameters in place. Counts as an
  /// in-place write (bumps the value's version, see SavedTensor) when called, whatever the caller
  /// then does; reading needs only value().
  Tensor& mutable_value() {
    if (impl_->deferred) [[unlikely]] materialize();
    impl_->value.bump_version();
    return impl_->value;
  }
  /// Shape and dtype are known without computing a deferred value.
  const Shape& shape() const {
    return impl_->deferred ? impl_->deferred->shape() : impl_->value.shape();
  }
  DType dtype() const { return impl_->deferred ? impl_->deferred->dtype() : impl_->value.dtype(); }
  /// What computes this Variable's value if it has not been computed yet; null otherwise.
  const Deferred* deferred() const { return impl_ ? impl_->deferred.get() : nullptr; }

  /// The accumulated gradient; undefined until a backward reaches this Variable.
  const Tensor& grad() const { return impl_->grad; }
  Tensor& mutable_grad() { return impl_->grad; }
  bool has_grad() const { return impl_->grad.defined(); }
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  /// Only leaves may change this: an op's output requires grad exactly when one of its inputs does.
  void set_requires_grad(bool requires_grad);

  /// The node that produced this Variable, or null for a leaf.
  const std::shared_ptr<Node>& node() const {
    if (impl_->deferred) [[unlikely]] materialize();
    return impl_->node;
  }
  bool is_leaf() const { return node() == nullptr; }
  /// A display name (parameters carry theirs, e.g. "conv1.weight"), used by the DOT export.
  const std::string& name() const { return impl_->name; }
  void set_name(std::string name) { impl_->name = std::move(name); }

  /// grad += g, checking shape and dtype: a wrong backward fails here, where it happens.
  void accumulate_grad(const Tensor& g, std::string_view op);

  /// The diagonal curvature estimate a curvature pass accumulated (engine.hpp), like grad():
  /// undefined until a pass reaches this Variable; only leaves keep it.
  const Tensor& curvature() const { return impl_->curvature; }
  Tensor& mutable_curvature() { return impl_->curvature; }
  /// curvature += h, checking shape and dtype.
  void accumulate_curvature(const Tensor& h, std::string_view op);
  /// Sets the gradient to zero in place (keeping its buffer) if it has one.
  void zero_grad();
  /// The same value, cut off from the graph (a new leaf that does not require grad).
  Variable detach() const;

  /// Reverse-mode differentiation from this Variable; see engine.hpp.
  void backward(bool retain_graph = false) const;
  void backward(const Tensor& grad_output, bool retain_graph = false) const;

  /// Identity of the shared state; two handles to the same Variable compare equal.
  const void* id() const { return impl_.get(); }
  long use_count() const { return impl_.use_count(); }

 private:
  struct Impl {
    Tensor value;
    Tensor grad;
    Tensor curvature;
    bool requires_grad = false;
    std::shared_ptr<Node> node;
    std::string name;
    std::shared_ptr<const Deferred> deferred;  // set until the value is computed
    bool deferred_grad_mode = true;            // grad mode when the op deferred it
    bool deferred_curvature_mode = false;      // and whether it recorded curvature rules
  };
  std::shared_ptr<Impl> impl_;

  /// Computes a deferred value and takes over the computed Variable's value and node.
  void materialize() const;

  friend struct Node;
  friend Variable record(Tensor, OpName, SmallList<Variable>, BackwardFn);
  template <class Rule>
  friend Variable record(Tensor, OpName, SmallList<Variable>, BackwardFn, Rule&&);
};

using VariableList = SmallList<Variable>;

/// A tensor an op saves for its backward, with the version of its storage when it was saved.
/// Saving shares the storage (no copy), so the backward would silently compute the gradient of
/// other numbers if the tensor were modified in place in between (an optimiser step run before
/// backward, a fill, an add_). unpack() checks the version and throws SavedTensorModified instead;
/// the engine turns that into one line naming the op and the input. Only what an op saves is
/// checked: an op that saves nothing (add, sum, reshape) does not mind its inputs changing after its
/// forward.
class SavedTensor {
 public:
  /// `input` is the position of the saved tensor among the op's inputs, or kOutput for the op's
  /// own result (log_softmax saves y); the error message names it.
  static constexpr int kOutput = -1;

  SavedTensor() = default;  // nothing saved
  SavedTensor(Tensor tensor, int input)
      : tensor_(std::move(tensor)), version_(tensor_.version()), input_(input) {}

  bool defined() const { return tensor_.defined(); }
  /// The saved tensor, after checking that its storage has not been written in place since.
  const Tensor& unpack() const {
    if (tensor_.version() != version_) [[unlikely]] throw_modified();
    return tensor_;
  }

 private:
  [[noreturn]] void throw_modified() const;

  Tensor tensor_;
  std::uint64_t version_ = 0;
  int input_ = kOutput;
};

/// What SavedTensor::unpack throws. backward() catches it and throws std::invalid_argument naming
/// the op and the input (by its Variable name when it has one).
struct SavedTensorModified : std::invalid_argument {
  SavedTensorModified(int input, std::uint64_t saved_version, std::uint64_t current_version);
  int input;  // position among the op's inputs, or SavedTensor::kOutput
  std::uint64_t saved_version, current_version;
};

/// One of an op's arguments other than its inputs, by name: conv2d's "stride", reshape's "shape",
/// pow's "exponent". What an exporter needs to write the op in another format (models/export/), and
/// what the graph picture shows. Ops record them only under an AttributeGuard (with_attributes).
struct OpAttribute {
  using Integers = std::vector<std::int64_t>;

  template <std::integral I>
  OpAttribute(std::string_view name, I value) : name(name), value(static_cast<std::int64_t>(value)) {}
  OpAttribute(std::string_view name, double value) : name(name), value(value) {}
  /// A list of integers: a Shape, a DimList.
  template <class List>
    requires std::integral<typename List::value_type>
  OpAttribute(std::string_view name, const List& values)
      : name(name), value(OpAttribute::Integers(values.begin(), values.end())) {}

  std::string_view name;  // a string literal
  std::variant<std::int64_t, double, Integers> value;
};
using OpAttributes = std::vector<OpAttribute>;

/// One recorded op. The node owns its inputs (the graph's edges) and its backward closure, which
/// holds the tensors saved by the forward by value and never the output, so there are no cycles.
/// Nodes, like Variables' shared state, come from the caching allocator.
struct Node {
  std::string_view op;    // "conv2d", "relu", ... (a string literal)
  VariableList inputs;    // edges, in data-flow order: inputs -> this node's output
  BackwardFn backward;    // empty once the graph has been freed
  CurvatureFn curvature;  // recorded only under a CurvatureGuard, for ops that have a rule
  std::unique_ptr<const OpAttributes> attributes;  // recorded only under an AttributeGuard
  bool freed = false;     // backward ran without retain_graph

  Node(OpName op, VariableList inputs, BackwardFn backward, CurvatureFn curvature = {});
  /// Releases the chain of inputs iteratively: a 100,000-op graph must not recurse 100,000 deep.
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
};

/// True unless a NoGradGuard is alive on this thread.
bool grad_enabled();

/// While alive, ops record nothing and keep no activations: for inference and optimiser steps.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// True when gradients are being recorded and at least one of `inputs` requires grad. Ops call it
/// before saving anything for backward, so inference saves nothing.
bool needs_grad(const VariableList& inputs);

/// True while a CurvatureGuard is alive on this thread.
bool curvature_enabled();

/// While alive, ops that have a curvature rule record it with their backward, for a curvature
/// pass (engine.hpp). Off by default: training steps that do not need curvature record none.
class CurvatureGuard {
 public:
  CurvatureGuard();
  ~CurvatureGuard();
  CurvatureGuard(const CurvatureGuard&) = delete;
  CurvatureGuard& operator=(const CurvatureGuard&) = delete;

 private:
  bool previous_;
};

/// True while an AttributeGuard is alive on this thread.
bool attributes_enabled();

/// While alive, ops record their attributes (OpAttribute) on their nodes, for an exporter tracing
/// a model or the graph picture. Off by default: ordinary recording builds no attributes.
class AttributeGuard {
 public:
  AttributeGuard();
  ~AttributeGuard();
  AttributeGuard(const AttributeGuard&) = delete;
  AttributeGuard& operator=(const AttributeGuard&) = delete;

 private:
  bool previous_;
};

/// Wraps an op's forward result. If needs_grad(inputs), records a node with the inputs and the
/// backward; otherwise returns a plain Variable and drops the backward (and what it saved).
Variable record(Tensor value, OpName op, VariableList inputs, BackwardFn backward);

/// record with the op's curvature rule as well, which is kept only under a CurvatureGuard (and
/// is not even made into a CurvatureFn otherwise).
template <class Rule>
Variable record(Tensor value, OpName op, VariableList inputs, BackwardFn backward, Rule&& curvature) {
  Variable out = record(std::move(value), op, std::move(inputs), std::move(backward));
  if (curvature_enabled() && out.impl_->node)
    out.impl_->node->curvature = CurvatureFn(std::forward<Rule>(curvature));
  return out;
}

/// `recorded`, with the attributes describe() returns on its node when an AttributeGuard is alive
/// and it has a node. Otherwise describe is never called, so that ordinary recording builds nothing:
///   return with_attributes(record(...), [&] { return OpAttributes{{"stride", stride}}; });
template <class Describe>
Variable with_attributes(Variable recorded, Describe&& describe) {
  if (attributes_enabled() && recorded.node())
    recorded.node()->attributes = std::make_unique<const OpAttributes>(describe());
  return recorded;
}

}  // namespace ag
