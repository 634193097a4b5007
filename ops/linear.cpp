// Matrix products: matmul and linear, each a few GEMMs (ops/kernels/gemm.hpp).
#include "ops/linear.hpp"

#include <algorithm>
#include <string>

#include "ops/kernels/elementwise.hpp"
#include "ops/kernels/gemm.hpp"

namespace ag {

using kernels::map_elements;

namespace {

using kernels::gemm;
using kernels::gemv;

void check_same_dtype(std::string_view op, const Variable& a, const Variable& b) {
  if (a.dtype() != b.dtype())
    fail(op, "dtype mismatch: " + shape_str(a.shape()) + " " + std::string(dtype_name(a.dtype())) +
                 " with " + shape_str(b.shape()) + " " + std::string(dtype_name(b.dtype())));
}

}  // namespace

Variable matmul(const Variable& a, const Variable& b) {
  if (!a.defined() || !b.defined()) fail("matmul", "undefined input");
  if (a.shape().size() != 2 || b.shape().size() != 2 || a.shape()[1] != b.shape()[0])
    fail("matmul", "cannot multiply " + shape_str(a.shape()) + " by " + shape_str(b.shape()) +
                       " (need [M, K] and [K, N])");
  check_same_dtype("matmul", a, b);
  const std::int64_t M = a.shape()[0], K = a.shape()[1], N = b.shape()[1];

  Tensor y({M, N}, a.dtype());
  dispatch(a.dtype(), [&]<class T>() {
    gemm<T>(false, false, M, N, K, a.value().data<T>(), b.value().data<T>(),
            /*accumulate=*/false, y.data<T>());
  });

  // Saves b (shared, not copied) if a needs a gradient, a if b does.
  const bool saving = needs_grad({a, b});
  const SavedTensor saved_a =
      saving && b.requires_grad() ? SavedTensor(a.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_b =
      saving && a.requires_grad() ? SavedTensor(b.value(), /*input=*/1) : SavedTensor{};
  return record(std::move(y), "matmul", {a, b},
                [saved_a, saved_b, M, K, N](const Tensor& dy, const GradMask& needs) {
                  if ((needs[0] && !saved_b.defined()) || (needs[1] && !saved_a.defined()))
                    fail("matmul", "an input began requiring grad after the forward");
                  Tensor grad_a = needs[0] ? Tensor({M, K}, dy.dtype()) : Tensor{};
                  Tensor grad_b = needs[1] ? Tensor({K, N}, dy.dtype()) : Tensor{};
                  dispatch(dy.dtype(), [&]<class T>() {
                    // da = dy b^T: [M, N] [N, K]
                    if (needs[0])
                      gemm<T>(false, true, M, K, N, dy.data<T>(), saved_b.unpack().data<T>(),
                              /*accumulate=*/false, grad_a.data<T>());
                    // db = a^T dy: [K, M] [M, N]
                    if (needs[1])
                      gemm<T>(true, false, K, N, M, saved_a.unpack().data<T>(), dy.data<T>(),
                              /*accumulate=*/false, grad_b.data<T>());
                  });
                  return TensorList{grad_a, grad_b};
                });
}

Variable linear(const Variable& x, const Variable& w, const Variable& b) {
  if (!x.defined() || !w.defined()) fail("linear", "undefined input");
  const auto shapes = [&] {  // built only on failure: this runs on every call
    return "x " + shape_str(x.shape()) + ", w " + shape_str(w.shape()) +
           (b.defined() ? ", b " + shape_str(b.shape()) : std::string{});
  };
  if (x.shape().size() != 2 || w.shape().size() != 2 || x.shape()[1] != w.shape()[1])
    fail("linear", "need x [N, in] and w [out, in], got " + shapes());
  if (b.defined() && (b.shape().size() != 1 || b.shape()[0] != w.shape()[0]))
    fail("linear", "need b [out] matching w [out, in], got " + shapes());
  check_same_dtype("linear", x, w);
  if (b.defined()) check_same_dtype("linear", w, b);
  const std::int64_t N = x.shape()[0], in = x.shape()[1], out = w.shape()[0];

  // y:[N, out] = x:[N, in] w^T:[in, out] (+ b:[out] on every row)
  Tensor y = Tensor::empty({N, out}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    T* y_data = y.data<T>();
    if (b.defined())
      for (std::int64_t n = 0; n < N; ++n)
        std::copy_n(b.value().data<T>(), out, y_data + n * out);
    // One row (a single image) is a matrix-vector product: y = w x (+ b).
    if (N == 1)
      gemv<T>(out, in, w.value().data<T>(), x.value().data<T>(), /*accumulate=*/b.defined(),
              y_data);
    else
      gemm<T>(false, true, N, out, in, x.value().data<T>(), w.value().data<T>(),
              /*accumulate=*/b.defined(), y_data);
  });

  // Saves x (shared, not copied) if w needs a gradient, w if x does; the bias needs nothing.
  VariableList inputs{x, w};
  if (b.defined()) inputs.push_back(b);
  const bool saving = needs_grad(inputs);
  const SavedTensor saved_x =
      saving && w.requires_grad() ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_w =
      saving && x.requires_grad() ? SavedTensor(w.value(), /*input=*/1) : SavedTensor{};
  // The adjoint of y = x w^T + b applied to t: dx = t w, dw = t^T x, db = sum over rows of t.
  // The backward is adjoint(dy, x, w); the curvature rule, adjoint(h, x^2, w^2) (y is linear in
  // each input, so h_x = h w^2, h_w = h^T x^2, h_b = sum of h).
  auto adjoint = [N, in, out](const Tensor& t, const Tensor& x, const Tensor& w, const GradMask& needs) {
    TensorList results(needs.size());
    dispatch(t.dtype(), [&]<class T>() {
      const T* t_data = t.data<T>();
      if (needs[0]) {  // [N, in] = t:[N, out] w:[out, in]
        results[0] = Tensor({N, in}, t.dtype());
        gemm<T>(false, false, N, in, out, t_data, w.data<T>(), /*accumulate=*/false, results[0].data<T>());
      }
      if (needs[1]) {  // [out, in] = t^T:[out, N] x:[N, in]
        results[1] = Tensor({out, in}, t.dtype());
        gemm<T>(true, false, out, in, N, t_data, x.data<T>(), /*accumulate=*/false, results[1].data<T>());
      }
      if (needs.size() > 2 && needs[2]) {  // [out] = sum over n of t[n, :]
        results[2] = Tensor({out}, t.dtype());
        T* sum = results[2].data<T>();
        for (std::int64_t n = 0; n < N; ++n)
          for (std::int64_t o = 0; o < out; ++o) sum[o] += t_data[n * out + o];
      }
    });
    return results;
  };
  return record(
      std::move(y), "linear", std::move(inputs),
      [saved_x, saved_w, adjoint](const Tensor& dy, const GradMask& needs) {
        if ((needs[0] && !saved_w.defined()) || (needs[1] && !saved_x.defined()))
          fail("linear", "an input began requiring grad after the forward");
        return adjoint(dy, needs[1] ? saved_x.unpack() : Tensor{}, needs[0] ? saved_w.unpack() : Tensor{},
                       needs);
      },
      [saved_x, saved_w, adjoint](const Tensor& h, const Tensor&, const GradMask& needs) {
        const auto square = [](auto v) { return v * v; };
        return adjoint(h, needs[1] ? map_elements(saved_x.unpack(), square) : Tensor{},
                       needs[0] ? map_elements(saved_w.unpack(), square) : Tensor{}, needs);
      });
}

}  // namespace ag
