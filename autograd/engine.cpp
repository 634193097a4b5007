// Reverse topological order (iterative DFS) and the backward pass over it.
#include "autograd/engine.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_set>
#include <utility>

namespace ag {

VariableOrder reverse_topological_order(const Variable& output, bool include_constants) {
  // The traversal's own bookkeeping also comes from the caching allocator: backward runs every step.
  VariableOrder order;
  std::unordered_set<const void*, std::hash<const void*>, std::equal_to<>,
                     CachingAllocator<const void*>>
      visited{output.id()};
  // Each frame is a Variable and the index of the next input of its node to visit.
  using Frame = std::pair<Variable, std::size_t>;
  std::vector<Frame, CachingAllocator<Frame>> stack{{output, 0}};
  while (!stack.empty()) {
    auto& [v, next] = stack.back();
    const Node* node = v.node().get();
    if (node && next < node->inputs.size()) {
      const Variable& input = node->inputs[next++];
      const bool wanted = include_constants ? input.defined() : input.requires_grad();
      if (wanted && visited.insert(input.id()).second)
        stack.emplace_back(input, 0);  // invalidates v and next; the loop re-reads stack.back()
      continue;
    }
    order.push_back(std::move(v));
    stack.pop_back();
  }
  // Post-order puts every input before its consumers; reversed, consumers come first.
  std::reverse(order.begin(), order.end());
  return order;
}

namespace {
// "input 1 ('fc1.weight'), saved for backward at version 0, was modified in place since (now
// version 1); ..." with the advice that fits an input or the op's own output.
std::string modified_saved_tensor_message(const Node& node, const SavedTensorModified& e) {
  std::string what;
  if (e.input == SavedTensor::kOutput) {
    what = "its output";
  } else {
    what = "input " + std::to_string(e.input);
    const auto i = static_cast<std::size_t>(e.input);
    if (i < node.inputs.size() && !node.inputs[i].name().empty())
      what += " ('" + node.inputs[i].name() + "')";
  }
  return what + ", saved for backward at version " + std::to_string(e.saved_version) +
         ", was modified in place since (now version " + std::to_string(e.current_version) +
         "); run backward before modifying it, or " +
         (e.input == SavedTensor::kOutput ? "modify a clone of it" : "give the op a clone of it");
}
}  // namespace

void backward(const Variable& output, const Tensor& grad_output, bool retain_graph) {
  if (!output.defined()) fail("backward", "undefined variable");
  if (!output.requires_grad())
    fail("backward", "the output does not require grad (no input requires grad, or it was "
                     "computed under NoGradGuard)");
  Tensor seed = grad_output;
  if (!seed.defined()) {
    if (output.value().numel() != 1)
      fail("backward", "output of shape " + shape_str(output.shape()) +
                           " is not a scalar; pass its gradient explicitly");
    seed = Tensor::ones(output.shape(), output.dtype());
  }

  const VariableOrder order = reverse_topological_order(output);
  for (const Variable& v : order)
    if (v.node() && v.node()->freed)
      fail("backward", "the graph through '" + std::string(v.node()->op) +
                           "' was already freed by an earlier backward; pass retain_graph = true "
                           "to the first backward to run it twice");

  Variable root = output;
  root.accumulate_grad(seed, "backward (output gradient)");
  for (Variable v : order) {
    Node* node = v.node().get();
    if (!node) continue;  // a leaf keeps its .grad
    Tensor grad_output_of_node = std::exchange(v.mutable_grad(), Tensor{});
    if (grad_output_of_node.defined()) {
      GradMask needs(node->inputs.size());
      for (std::size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i].requires_grad();
      TensorList grads;
      try {
        grads = node->backward(grad_output_of_node, needs);
      } catch (const SavedTensorModified& e) {
        fail(node->op, modified_saved_tensor_message(*node, e));
      }
      if (grads.size() != node->inputs.size())
        fail(node->op, "backward returned " + std::to_string(grads.size()) +
                           " gradients for " + std::to_string(node->inputs.size()) + " inputs");
      for (std::size_t i = 0; i < grads.size(); ++i)
        if (needs[i] && grads[i].defined()) node->inputs[i].accumulate_grad(grads[i], node->op);
    }
    if (!retain_graph) {
      node->backward.reset();  // releases the tensors the forward saved
      node->freed = true;
    }
  }
}

void backward_with_curvature(const Variable& output) {
  if (!output.defined() || !output.requires_grad())
    fail("curvature", "the output does not require grad");
  if (output.value().numel() != 1)
    fail("curvature", "output of shape " + shape_str(output.shape()) + " is not a scalar");
  const VariableOrder order = reverse_topological_order(output);
  for (const Variable& v : order) {
    const Node* node = v.node().get();
    if (!node) continue;
    if (node->freed) fail("curvature", "the graph was already freed by an earlier backward");
    if (!node->curvature)
      fail("curvature", "no curvature rule for op " + std::string(node->op) +
                            " (or the graph was not recorded under a CurvatureGuard)");
  }

  Variable root = output;
  root.accumulate_grad(Tensor::ones(output.shape(), output.dtype()), "curvature (output gradient)");
  root.accumulate_curvature(Tensor::zeros(output.shape(), output.dtype()), "curvature (output)");
  for (Variable v : order) {
    Node* node = v.node().get();
    if (!node) continue;  // a leaf keeps its .grad and .curvature
    const Tensor g = std::exchange(v.mutable_grad(), Tensor{});
    const Tensor h = std::exchange(v.mutable_curvature(), Tensor{});
    if (g.defined()) {
      GradMask needs(node->inputs.size());
      for (std::size_t i = 0; i < needs.size(); ++i) needs[i] = node->inputs[i].requires_grad();
      TensorList grads, curvatures;
      try {
        grads = node->backward(g, needs);
        curvatures = node->curvature(h.defined() ? h : Tensor::zeros(g.shape(), g.dtype()), g, needs);
      } catch (const SavedTensorModified& e) {
        fail(node->op, modified_saved_tensor_message(*node, e));
      }
      if (grads.size() != node->inputs.size() || curvatures.size() != node->inputs.size())
        fail(node->op, "backward or curvature rule returned the wrong number of tensors");
      for (std::size_t i = 0; i < grads.size(); ++i) {
        if (!needs[i]) continue;
        if (grads[i].defined()) node->inputs[i].accumulate_grad(grads[i], node->op);
        if (curvatures[i].defined()) node->inputs[i].accumulate_curvature(curvatures[i], node->op);
      }
    }
    node->backward.reset();
    node->curvature.reset();
    node->freed = true;
  }
}

}  // namespace ag
