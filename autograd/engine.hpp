// The engine: reverse topological order over the graph behind a Variable, and backward.
#pragma once

#include <vector>

#include "autograd/allocator.hpp"
#include "autograd/variable.hpp"

namespace ag {

/// A list of Variables in the caching allocator, so that a traversal in a training loop reuses the
/// memory of the one before.
using VariableOrder = std::vector<Variable, CachingAllocator<Variable>>;

/// Every Variable the output depends on through requires-grad edges, each once, ordered so that
/// every Variable comes after all Variables computed from it (the output first, leaves last).
/// Iterative depth-first search: the depth of the graph does not touch the C++ stack. The DOT
/// export walks the same order with `include_constants` so that it also shows non-grad inputs.
VariableOrder reverse_topological_order(const Variable& output, bool include_constants = false);

/// Reverse-mode differentiation: seeds d(output) with `grad_output` (or 1 for a one-element output
/// when grad_output is undefined), calls each node's backward once in reverse topological order,
/// and accumulates the results into its inputs. Leaves that require grad keep .grad (summed with
/// what was there); intermediate gradients are dropped as soon as they have been used. Unless
/// `retain_graph`, each node's backward and the tensors it saved are released afterwards, and a
/// second backward through the same graph throws.
void backward(const Variable& output, const Tensor& grad_output = {}, bool retain_graph = false);

/// The curvature pass: backward of a scalar `output` E that also propagates, next to each
/// gradient, the diagonal of d2E/dx2 by each node's curvature rule (CurvatureFn in variable.hpp:
/// off-diagonal terms dropped, Gauss-Newton through activations), seeded with h = 0 and g = 1 at
/// E, so that curvature comes from the second derivatives of the ops that make the criterion.
/// Leaves that require grad accumulate .grad as backward does and .curvature likewise. The graph
/// must have been recorded under a CurvatureGuard; a node without a rule throws
/// std::invalid_argument("curvature: no curvature rule for op <op>"). The graph is freed after.
void backward_with_curvature(const Variable& output);

}  // namespace ag
