// squared_distances: forward, backward and curvature rule side by side.
#include "ops/distance.hpp"

#include <algorithm>
#include <string>

#include "autograd/allocator.hpp"

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

  // y:[N, M], each square rounded to the dtype and summed in double over j in order. The M sums of
  // a row run side by side (c read transposed), so that they are independent chains, not one.
  Tensor y = Tensor::empty({N, M}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    const T* c_data = c.value().template data<T>();
    T* y_data = y.data<T>();
    const auto c_t = make_cached_array<T>(static_cast<std::size_t>(D * M));  // [D, M]
    for (std::int64_t i = 0; i < M; ++i)
      for (std::int64_t j = 0; j < D; ++j) c_t[j * M + i] = c_data[i * D + j];
    const auto sums = make_cached_array<double>(static_cast<std::size_t>(M));
    const auto squares = make_cached_array<T>(static_cast<std::size_t>(M));
    for (std::int64_t n = 0; n < N; ++n) {
      std::fill(sums.get(), sums.get() + M, 0.0);
      for (std::int64_t j = 0; j < D; ++j) {
        const T x_nj = x_data[n * D + j];
        const T* c_j = c_t.get() + j * M;
        // Squares rounded to T first, then added, in two loops: in one, the compiler would fuse
        // a float64 square and its sum into one multiply-add, rounded once.
        for (std::int64_t i = 0; i < M; ++i) squares[i] = (x_nj - c_j[i]) * (x_nj - c_j[i]);
        for (std::int64_t i = 0; i < M; ++i) sums[i] += squares[i];
      }
      for (std::int64_t i = 0; i < M; ++i) y_data[n * M + i] = static_cast<T>(sums[i]);
    }
  });

  if (!needs_grad({x, c})) return record(std::move(y), "squared_distances", {x, c}, nullptr);
  // Saved for backward (shared, not copied): x and c, whose differences every derivative reads.
  const SavedTensor saved_x(x.value(), /*input=*/0), saved_c(c.value(), /*input=*/1);
  // With d = x[n, j] - c[i, j], dy[n, i]/dx[n, j] = 2 d = -dy[n, i]/dc[i, j] and both second
  // derivatives are 2. For each (n, i), over the row j (a loop the compiler vectorises), the
  // backward adds 2 d t to dx and -2 d t to dc (t = dy[n, i]); the curvature rule adds
  // 4 d^2 h + 2 g to both.
  auto adjoint = [N, M, D](const Tensor& x, const Tensor& c, const Tensor& t, const Tensor& g,
                           const GradMask& needs) {
    const bool curvature = g.defined();
    TensorList results(2);
    if (needs[0]) results[0] = Tensor({N, D}, x.dtype());
    if (needs[1]) results[1] = Tensor({M, D}, x.dtype());
    dispatch(x.dtype(), [&]<class T>() {
      const T* x_data = x.data<T>();
      const T* c_data = c.data<T>();
      const T* t_data = t.data<T>();
      const T* g_data = curvature ? g.data<T>() : nullptr;
      for (int input = 0; input < 2; ++input) {
        if (!needs[static_cast<std::size_t>(input)]) continue;
        T* out = results[static_cast<std::size_t>(input)].data<T>();
        const T sign = input == 0 ? T(1) : T(-1);
        for (std::int64_t n = 0; n < N; ++n)
          for (std::int64_t i = 0; i < M; ++i) {
            const T* x_n = x_data + n * D;
            const T* c_i = c_data + i * D;
            T* row = out + (input == 0 ? n : i) * D;
            const T tv = t_data[n * M + i];
            if (!curvature) {
              const T scale = 2 * sign * tv;
              for (std::int64_t j = 0; j < D; ++j) row[j] += scale * (x_n[j] - c_i[j]);
            } else {
              const T scale = 4 * tv, constant = 2 * g_data[n * M + i];
              for (std::int64_t j = 0; j < D; ++j) {
                const T d = x_n[j] - c_i[j];
                row[j] += scale * d * d + constant;
              }
            }
          }
      }
    });
    return results;
  };
  return record(
      std::move(y), "squared_distances", {x, c},
      [saved_x, saved_c, adjoint](const Tensor& dy, const GradMask& needs) {
        return adjoint(saved_x.unpack(), saved_c.unpack(), dy, Tensor{}, needs);
      },
      [saved_x, saved_c, adjoint](const Tensor& h, const Tensor& g, const GradMask& needs) {
        return adjoint(saved_x.unpack(), saved_c.unpack(), h, g, needs);
      });
}

}  // namespace ag
