// Variable state, gradient accumulation, the no-grad flag and op recording.
#include "autograd/variable.hpp"

#include "autograd/engine.hpp"

namespace ag {

namespace {
thread_local bool grad_mode = true;
thread_local bool curvature_mode = false;
thread_local bool attributes_mode = false;
}

bool grad_enabled() { return grad_mode; }

NoGradGuard::NoGradGuard() : previous_(grad_mode) { grad_mode = false; }
NoGradGuard::~NoGradGuard() { grad_mode = previous_; }

bool curvature_enabled() { return curvature_mode; }

CurvatureGuard::CurvatureGuard() : previous_(curvature_mode) { curvature_mode = true; }
CurvatureGuard::~CurvatureGuard() { curvature_mode = previous_; }

bool attributes_enabled() { return attributes_mode; }

AttributeGuard::AttributeGuard() : previous_(attributes_mode) { attributes_mode = true; }
AttributeGuard::~AttributeGuard() { attributes_mode = previous_; }

Node::Node(OpName op, VariableList inputs, BackwardFn backward, CurvatureFn curvature)
    : op(op.c_str()), inputs(std::move(inputs)), backward(std::move(backward)),
      curvature(std::move(curvature)) {}

Node::~Node() {
  // Destroying the last handle to a long chain would otherwise recurse once per op
  // (Variable -> Node -> input Variable -> Node ...). Instead, whenever we hold the last reference
  // to an input and to its node, we move that node's inputs onto our own list before letting go.
  VariableList pending = std::move(inputs);
  while (!pending.empty()) {
    Variable v = std::move(pending.back());
    pending.pop_back();
    if (v.impl_ && v.impl_.use_count() == 1 && v.impl_->node && v.impl_->node.use_count() == 1) {
      auto& grand_inputs = v.impl_->node->inputs;
      for (auto& g : grand_inputs) pending.push_back(std::move(g));
      grand_inputs.clear();
    }
  }
}

Variable::Variable(Tensor value, bool requires_grad, std::string name)
    : impl_(std::allocate_shared<Impl>(CachingAllocator<Impl>{})) {
  if (!value.defined()) fail("Variable", "cannot wrap an undefined tensor");
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
  impl_->name = std::move(name);
}

Variable Variable::defer(std::shared_ptr<const Deferred> deferred, bool requires_grad) {
  if (!deferred) fail("Variable::defer", "null deferred computation");
  Variable out;
  out.impl_ = std::allocate_shared<Impl>(CachingAllocator<Impl>{});
  out.impl_->requires_grad = requires_grad;
  out.impl_->deferred = std::move(deferred);
  out.impl_->deferred_grad_mode = grad_mode;
  out.impl_->deferred_curvature_mode = curvature_mode;
  return out;
}

void Variable::materialize() const {
  // Taken out first, so that compute() sees an ordinary (if empty) Variable, never itself deferred.
  std::shared_ptr<const Deferred> deferred = std::move(impl_->deferred);
  struct RestoreModes {
    bool previous_grad = grad_mode, previous_curvature = curvature_mode;
    ~RestoreModes() {
      grad_mode = previous_grad;
      curvature_mode = previous_curvature;
    }
  } restore;
  grad_mode = impl_->deferred_grad_mode;
  curvature_mode = impl_->deferred_curvature_mode;
  Variable computed;
  try {
    computed = deferred->compute();
  } catch (...) {
    impl_->deferred = std::move(deferred);
    throw;
  }
  impl_->value = computed.impl_->value;
  impl_->node = computed.impl_->node;
  impl_->requires_grad = computed.impl_->requires_grad;
}

void Variable::set_requires_grad(bool requires_grad) {
  if (!is_leaf())
    fail("set_requires_grad", "only leaves can change requires_grad (this is the output of '" +
                                  std::string(impl_->node->op) + "'); use detach()");
  impl_->requires_grad = requires_grad;
}

void Variable::accumulate_grad(const Tensor& g, std::string_view op) {
  const Tensor& v = value();
  if (g.shape() != v.shape() || g.dtype() != v.dtype())
    fail(op, "backward produced a gradient of shape " + shape_str(g.shape()) + " " +
                 std::string(dtype_name(g.dtype())) + " for a value of shape " +
                 shape_str(v.shape()) + " " + std::string(dtype_name(v.dtype())));
  if (!impl_->grad.defined()) {
    // Adopt a gradient nobody else holds; copy one that is shared (e.g. add passes dy to both
    // inputs), since a later accumulation writes into it in place.
    impl_->grad = g.is_unique() ? g : g.clone();
  } else {
    impl_->grad.add_(g, op);
  }
}

void Variable::accumulate_curvature(const Tensor& h, std::string_view op) {
  const Tensor& v = value();
  if (h.shape() != v.shape() || h.dtype() != v.dtype())
    fail(op, "curvature rule produced a curvature of shape " + shape_str(h.shape()) + " " +
                 std::string(dtype_name(h.dtype())) + " for a value of shape " +
                 shape_str(v.shape()) + " " + std::string(dtype_name(v.dtype())));
  if (!impl_->curvature.defined()) impl_->curvature = h.is_unique() ? h : h.clone();
  else impl_->curvature.add_(h, op);
}

void Variable::zero_grad() {
  if (impl_->grad.defined()) impl_->grad.fill(0.0);
}

Variable Variable::detach() const { return Variable(value(), false, impl_->name); }

void Variable::backward(bool retain_graph) const { ag::backward(*this, {}, retain_graph); }

void Variable::backward(const Tensor& grad_output, bool retain_graph) const {
  ag::backward(*this, grad_output, retain_graph);
}

namespace {
std::string saved_what(int input) {
  return input == SavedTensor::kOutput ? "the output" : "input " + std::to_string(input);
}
}  // namespace

SavedTensorModified::SavedTensorModified(int input, std::uint64_t saved_version,
                                         std::uint64_t current_version)
    : std::invalid_argument("backward: " + saved_what(input) + ", saved for backward at version " +
                            std::to_string(saved_version) +
                            ", was modified in place (now version " +
                            std::to_string(current_version) + ")"),
      input(input), saved_version(saved_version), current_version(current_version) {}

void SavedTensor::throw_modified() const {
  throw SavedTensorModified(input_, version_, tensor_.version());
}

bool needs_grad(const VariableList& inputs) {
  if (!grad_mode) return false;
  for (const auto& v : inputs)
    if (v.defined() && v.requires_grad()) return true;
  return false;
}

Variable record(Tensor value, OpName op, VariableList inputs, BackwardFn backward) {
  Variable out(std::move(value));
  if (needs_grad(inputs)) {
    out.impl_->requires_grad = true;
    out.impl_->node = std::allocate_shared<Node>(CachingAllocator<Node>{}, op, std::move(inputs),
                                                 std::move(backward));
  }
  return out;
}

}  // namespace ag
