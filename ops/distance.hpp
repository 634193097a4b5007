// Distances between the rows of two matrices.
#pragma once

#include "autograd/variable.hpp"

namespace ag {

/// y[n, i] = sum_j (x[n, j] - c[i, j])^2: the squared Euclidean distance from each row of x to each
/// row of c (the 1998 LeNet-5's RBF output units, c their prototypes). Each sum runs over j in
/// order, in double, as sum(pow(x - c, 2), {2}) over the broadcast difference does: the same values.
///   dx[n, j] = sum_i 2 (x[n, j] - c[i, j]) dy[n, i],   dc[i, j] = -sum_n 2 (x[n, j] - c[i, j]) dy[n, i]
/// Curvature, exact (d2y/dx2 = 2):  h_x[n, j] = sum_i 4 (x[n, j] - c[i, j])^2 h[n, i] + 2 g[n, i],
/// likewise for c over n.
/// x:[N, D]  c:[M, D] -> y:[N, M], same dtype. Throws std::invalid_argument("squared_distances: ...")
/// for other shapes.
Variable squared_distances(const Variable& x, const Variable& c);

}  // namespace ag
