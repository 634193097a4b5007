// squared_distances: forward, backward and curvature rule, each a loop over (n, i, j).
#include "ops/distance.hpp"

#include <string>

namespace ag {

Variable squared_distances(const Variable& x, const Variable& c) {
  if (!x.defined() || !c.defined()) fail("squared_distances", "undefined input");
  if (x.shape().size() != 2 || c.shape().size() != 2 || x.shape()[1] != c.shape()[1])
    fail("squared_distances", "need x [N, D] and c [M, D], got x " + shape_str(x.shape()) +
                                  ", c " + shape_str(c.shape()));
  if (x.dtype() != c.dtype())
    fail("squared_distances", "x is " + std::string(dtype_name(x.dtype())) + " but c is " +
                                  std::string(dtype_name(c.dtype())));
  const std::int64_t N = x.shape()[0], M = c.shape()[0], D = x.shape()[1];

  // y:[N, M], each square rounded to the dtype and summed in double.
  Tensor y = Tensor::empty({N, M}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    const T* c_data = c.value().template data<T>();
    T* y_data = y.data<T>();
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t i = 0; i < M; ++i) {
        double sum = 0;
        for (std::int64_t j = 0; j < D; ++j) {
          const T d = x_data[n * D + j] - c_data[i * D + j];
          sum += d * d;
        }
        y_data[n * M + i] = static_cast<T>(sum);
      }
  });

  if (!needs_grad({x, c})) return record(std::move(y), "squared_distances", {x, c}, nullptr);
  // Saved for backward (shared, not copied): x and c, whose differences every derivative reads.
  const SavedTensor saved_x(x.value(), /*input=*/0), saved_c(c.value(), /*input=*/1);
  // For each (n, i, j), with d = x[n, j] - c[i, j] and slope = dy[n, i]/dx[n, j] = 2 d:
  //   the backward adds slope t to dx and -slope t to dc (t = dy);
  //   the curvature rule adds slope^2 h + 2 g to both (d2y/dx2 = d2y/dc2 = 2).
  // Either way, fn(slope, n, i) gives the terms for x and for c.
  auto accumulate = [N, M, D](const Tensor& x, const Tensor& c, const GradMask& needs,
                              auto&& term_x, auto&& term_c) {
    TensorList results(2);
    if (needs[0]) results[0] = Tensor({N, D}, x.dtype());
    if (needs[1]) results[1] = Tensor({M, D}, x.dtype());
    dispatch(x.dtype(), [&]<class T>() {
      const T* x_data = x.data<T>();
      const T* c_data = c.data<T>();
      T* dx = needs[0] ? results[0].data<T>() : nullptr;
      T* dc = needs[1] ? results[1].data<T>() : nullptr;
      for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t i = 0; i < M; ++i)
          for (std::int64_t j = 0; j < D; ++j) {
            const T slope = 2 * (x_data[n * D + j] - c_data[i * D + j]);
            if (dx) dx[n * D + j] += term_x(slope, n * M + i);
            if (dc) dc[i * D + j] += term_c(slope, n * M + i);
          }
    });
    return results;
  };
  return record(
      std::move(y), "squared_distances", {x, c},
      [saved_x, saved_c, accumulate](const Tensor& dy, const GradMask& needs) {
        return dispatch(dy.dtype(), [&]<class T>() {
          const T* t = dy.data<T>();
          return accumulate(
              saved_x.unpack(), saved_c.unpack(), needs,
              [t](T slope, std::int64_t k) { return slope * t[k]; },
              [t](T slope, std::int64_t k) { return -slope * t[k]; });
        });
      },
      [saved_x, saved_c, accumulate](const Tensor& h, const Tensor& g, const GradMask& needs) {
        return dispatch(h.dtype(), [&]<class T>() {
          const T* h_data = h.data<T>();
          const T* g_data = g.data<T>();
          const auto term = [h_data, g_data](T slope, std::int64_t k) {
            return slope * slope * h_data[k] + 2 * g_data[k];
          };
          return accumulate(saved_x.unpack(), saved_c.unpack(), needs, term, term);
        });
      });
}

}  // namespace ag
