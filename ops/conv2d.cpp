// conv2d: im2col + GEMM forward, and its backward (GEMMs + col2im) right below it.
#include "ops/conv2d.hpp"

#include "ops/kernels/elementwise.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "ops/fusion/fusion.hpp"
#include "ops/kernels/conv_geometry.hpp"
#include "ops/kernels/gemm.hpp"

namespace ag {

namespace {

using kernels::gemm;

// cols[(c*KH + p)*KW + q, i*Wo + j] = image[c, i*stride + p - padding, j*stride + q - padding],
// zero outside the image.   image:[Cin, H, W] -> cols:[K, P]
// The output columns j whose input column j*stride + q - padding lies inside the image: [lo, hi).
struct ColumnRange {
  std::int64_t lo, hi;
};
ColumnRange inside_columns(const ConvGeometry& g, std::int64_t q) {
  const std::int64_t shift = q - g.padding;  // input column of output column 0
  std::int64_t lo = shift >= 0 ? 0 : (-shift + g.stride - 1) / g.stride;
  std::int64_t hi = g.width - 1 - shift < 0 ? 0 : (g.width - 1 - shift) / g.stride + 1;
  lo = std::min(lo, g.out_w);
  hi = std::clamp(hi, lo, g.out_w);
  return {lo, hi};
}

template <class T>
void im2col(const ConvGeometry& g, const T* image, T* cols) {
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p)
      for (std::int64_t q = 0; q < g.kernel_w; ++q) {
        const T* plane = image + c * g.height * g.width;
        T* row = cols + ((c * g.kernel_h + p) * g.kernel_w + q) * g.pixels();
        for (std::int64_t i = 0; i < g.out_h; ++i) {
          const std::int64_t h = i * g.stride + p - g.padding;
          T* out = row + i * g.out_w;
          if (h < 0 || h >= g.height) {
            std::fill(out, out + g.out_w, T(0));
            continue;
          }
          // Zeros where the window hangs over the left or right edge; the rest is one run of the
          // input row (a plain copy at stride 1).
          const auto [lo, hi] = inside_columns(g, q);
          const T* in = plane + h * g.width + q - g.padding;
          std::fill(out, out + lo, T(0));
          if (g.stride == 1) std::copy(in + lo, in + hi, out + lo);
          else for (std::int64_t j = lo; j < hi; ++j) out[j] = in[j * g.stride];
          std::fill(out + hi, out + g.out_w, T(0));
        }
      }
}

// The adjoint of im2col: adds every entry of cols back onto the image pixel it was copied from
// (a pixel under several windows collects several terms).   cols:[K, P] -> image:[Cin, H, W] (+=)
template <class T>
void col2im(const ConvGeometry& g, const T* cols, T* image) {
  for (std::int64_t c = 0; c < g.in_channels; ++c)
    for (std::int64_t p = 0; p < g.kernel_h; ++p)
      for (std::int64_t q = 0; q < g.kernel_w; ++q) {
        T* plane = image + c * g.height * g.width;
        const T* row = cols + ((c * g.kernel_h + p) * g.kernel_w + q) * g.pixels();
        for (std::int64_t i = 0; i < g.out_h; ++i) {
          const std::int64_t h = i * g.stride + p - g.padding;
          if (h < 0 || h >= g.height) continue;
          const T* in = row + i * g.out_w;
          const auto [lo, hi] = inside_columns(g, q);
          T* out = plane + h * g.width + q - g.padding;
          for (std::int64_t j = lo; j < hi; ++j) out[j * g.stride] += in[j];
        }
      }
}

// conv2d's attributes: the connection table as [Cout * Cin] of 0 and 1, row-major.
OpAttributes conv2d_attributes(const ConnectionTable& connections, std::int64_t stride,
                               std::int64_t padding) {
  OpAttributes attributes{{"stride", stride}, {"padding", padding}};
  if (connections.all()) return attributes;
  std::vector<std::int64_t> table;
  for (std::int64_t o = 0; o < connections.out_channels(); ++o)
    for (std::int64_t c = 0; c < connections.in_channels(); ++c)
      table.push_back(connections.connects(o, c) ? 1 : 0);
  attributes.emplace_back("connections", table);
  return attributes;
}

}  // namespace

ConnectionTable::ConnectionTable(std::int64_t out_channels, std::int64_t in_channels,
                                 std::vector<bool> connected) {
  if (out_channels < 1 || in_channels < 1 ||
      static_cast<std::int64_t>(connected.size()) != out_channels * in_channels)
    throw std::invalid_argument("ConnectionTable: " + std::to_string(connected.size()) +
                                " entries for " + std::to_string(out_channels) + " x " +
                                std::to_string(in_channels) + " channels");
  for (std::int64_t o = 0; o < out_channels; ++o) {
    const auto row = connected.begin() + o * in_channels;
    if (std::find(row, row + in_channels, true) == row + in_channels)
      throw std::invalid_argument("ConnectionTable: output channel " + std::to_string(o) +
                                  " reads no input channel");
  }
  table_ = std::make_shared<const Table>(Table{out_channels, in_channels, std::move(connected)});
}

std::int64_t ConnectionTable::pairs(std::int64_t out_channels, std::int64_t in_channels) const {
  if (!table_) return out_channels * in_channels;
  return std::count(table_->connected.begin(), table_->connected.end(), true);
}

void ConnectionTable::zero_unconnected(Tensor& w) const {
  if (!table_) return;
  const std::int64_t slice = w.shape()[2] * w.shape()[3];
  dispatch(w.dtype(), [&]<class T>() {
    T* data = w.data<T>();
    for (std::int64_t o = 0; o < table_->out_channels; ++o)
      for (std::int64_t c = 0; c < table_->in_channels; ++c)
        if (!connects(o, c)) {
          T* first = data + (o * table_->in_channels + c) * slice;
          std::fill(first, first + slice, T(0));
        }
  });
}

Tensor ConnectionTable::connected(const Tensor& w) const {
  if (!table_) return w;
  const std::int64_t slice = w.shape()[2] * w.shape()[3];
  const bool zero_already = dispatch(w.dtype(), [&]<class T>() {
    const T* data = w.data<T>();
    for (std::int64_t o = 0; o < table_->out_channels; ++o)
      for (std::int64_t c = 0; c < table_->in_channels; ++c) {
        if (connects(o, c)) continue;
        const T* first = data + (o * table_->in_channels + c) * slice;
        if (std::any_of(first, first + slice, [](T v) { return v != T(0); })) return false;
      }
    return true;
  });
  if (zero_already) return w;
  Tensor masked = w.clone();
  zero_unconnected(masked);
  return masked;
}

Variable conv2d(const Variable& x, const Variable& w, const Variable& b, std::int64_t stride,
                std::int64_t padding) {
  return conv2d(x, w, b, ConnectionTable{}, stride, padding);
}

Variable conv2d(const Variable& x, const Variable& w, const Variable& b,
                const ConnectionTable& connections, std::int64_t stride, std::int64_t padding) {
  // x:[N,Cin,H,W]  w:[Cout,Cin,KH,KW]  b:[Cout] -> y:[N,Cout,Ho,Wo]
  // Per image n, with K = Cin*KH*KW and P = Ho*Wo:
  //   y[n]:[Cout, P] = w:[Cout, K] cols[n]:[K, P] + b   (cols = im2col of x[n])
  // A connection table zeroes the unconnected slices of (a copy of) w and of dw: this path is the
  // reference, and spends the same work on every pair.
  // With fusion on, the result waits for its consumer: a relu and max_pool2d may run with it as
  // one kernel (ops/fusion/fusion.hpp); any other use computes it below. Arguments are checked now.
  check_connections(w, connections);
  if (fusion_enabled()) return defer_conv2d(x, w, b, connections, stride, padding);
  const ConvGeometry g = conv_geometry(x, w, b, stride, padding);
  const Tensor weights = connections.connected(w.value());
  const bool has_bias = b.defined();
  // A kernel that covers the whole unpadded input (the 1998 LeNet-5's C5) has one position, whose
  // columns are the image itself: the convolution is one product over the batch,
  //   y:[N, Cout] = x:[N, K] w:[Cout, K]^T + b,
  // instead of a matrix-vector product per image, each streaming all the weights.
  const bool whole_input = g.padding == 0 && g.kernel_h == g.height && g.kernel_w == g.width;
  const std::int64_t cout = g.out_channels, k = g.patch(), p = g.pixels();
  const std::int64_t image_size = g.in_channels * g.height * g.width;

  VariableList inputs{x, w};
  if (has_bias) inputs.push_back(b);
  // Saved for w's gradient: x, and its columns too when they are small (a batch of a few images),
  // so that the backward need not rebuild them. Kept for large batches they would hold K/Cin =
  // KH*KW times the memory of x; rebuilt, an im2col costs far less than the GEMMs around it.
  constexpr std::int64_t kKeptColumns = 1 << 18;
  const bool keep_cols =
      needs_grad(inputs) && w.requires_grad() && !whole_input && g.batch * k * p <= kKeptColumns;
  Tensor kept_cols = keep_cols ? Tensor::empty({g.batch, k, p}, x.dtype()) : Tensor{};

  Tensor y = Tensor::empty({g.batch, g.out_channels, g.out_h, g.out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    const T* w_data = weights.template data<T>();
    T* y_data = y.data<T>();
    if (whole_input) {
      if (has_bias)
        for (std::int64_t n = 0; n < g.batch; ++n)
          std::copy_n(b.value().template data<T>(), cout, y_data + n * cout);
      // One image: a matrix-vector product (as linear), which a GEMM's packing would only slow.
      if (g.batch == 1) kernels::gemv(cout, k, w_data, x_data, /*accumulate=*/has_bias, y_data);
      else gemm(false, true, g.batch, cout, k, x_data, w_data, /*accumulate=*/has_bias, y_data);
      return;
    }
    Tensor scratch = keep_cols ? Tensor{} : Tensor::empty({g.patch(), g.pixels()}, x.dtype());
    for (std::int64_t n = 0; n < g.batch; ++n) {
      T* y_n = y_data + n * g.out_channels * g.pixels();
      if (has_bias) {
        const T* b_data = b.value().template data<T>();
        for (std::int64_t o = 0; o < g.out_channels; ++o)
          std::fill(y_n + o * g.pixels(), y_n + (o + 1) * g.pixels(), b_data[o]);
      }
      T* cols = keep_cols ? kept_cols.data<T>() + n * k * p : scratch.data<T>();
      im2col(g, x_data + n * image_size, cols);
      gemm(false, false, cout, p, k, w_data, cols, /*accumulate=*/has_bias, y_n);
    }
  });

  if (!needs_grad(inputs)) return record(std::move(y), "conv2d", std::move(inputs), nullptr);

  // Saved for backward (handles sharing storage, no copy): x if w needs a gradient, w if x does.
  const SavedTensor saved_x =
      w.requires_grad() ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_w =
      x.requires_grad() ? SavedTensor(w.value(), /*input=*/1) : SavedTensor{};
  // The adjoint of the convolution applied to t, given x and w:
  //   [0] x:[N, Cin, H, W]  per image col2im(w^T:[K, Cout] t[n]:[Cout, P])
  //   [1] w:[Cout, K]       sum_n t[n] cols[n]^T   (cols = im2col of x[n], or given:[N, K, P])
  //   [2] b:[Cout]          sum over n, i, j of t
  // The backward is adjoint(dy, x, w); the curvature rule, adjoint(h, x^2, w^2) (y is linear in
  // each input, and a shared weight sums the terms of the connections that share it).
  // With a kernel over the whole input, [0] and [1] are products over the batch:
  //   [0] x:[N, K] = t:[N, Cout] w:[Cout, K]    [1] w:[Cout, K] = t^T:[Cout, N] x:[N, K]
  auto adjoint = [g, has_bias, whole_input, connections](const Tensor& t, const Tensor& x,
                                                         const Tensor& given_cols, const Tensor& w,
                                                         const GradMask& needs) {
    const std::int64_t cout = g.out_channels, k = g.patch(), p = g.pixels();
    const std::int64_t image_size = g.in_channels * g.height * g.width;
    TensorList results(has_bias ? 3 : 2);
    dispatch(t.dtype(), [&]<class T>() {
      const T* t_data = t.data<T>();
      if (whole_input && needs[0]) {  // both products overwrite their whole result
        Tensor result = Tensor::empty({g.batch, g.in_channels, g.height, g.width}, t.dtype());
        gemm(false, false, g.batch, k, cout, t_data, w.data<T>(), /*accumulate=*/false,
             result.data<T>());
        results[0] = result;
      }
      if (whole_input && needs[1]) {
        Tensor result = Tensor::empty({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, t.dtype());
        T* dw = result.data<T>();
        const T* x_data = x.data<T>();
        // One image: an outer product, which a GEMM would pack and block for nothing.
        if (g.batch == 1)
          for (std::int64_t o = 0; o < cout; ++o)
            for (std::int64_t i = 0; i < k; ++i) dw[o * k + i] = t_data[o] * x_data[i];
        else gemm(true, false, cout, k, g.batch, t_data, x_data, /*accumulate=*/false, dw);
        results[1] = result;
      }
      // scratch: cols[n], then w^T t[n]
      Tensor cols = whole_input ? Tensor{} : Tensor({g.patch(), g.pixels()}, t.dtype());
      if (!whole_input && needs[0]) {
        Tensor result({g.batch, g.in_channels, g.height, g.width}, t.dtype());
        for (std::int64_t n = 0; n < g.batch; ++n) {
          gemm(true, false, k, p, cout, w.data<T>(), t_data + n * cout * p, /*accumulate=*/false,
               cols.data<T>());
          col2im(g, cols.data<T>(), result.data<T>() + n * image_size);
        }
        results[0] = result;
      }
      if (!whole_input && needs[1]) {
        Tensor result({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, t.dtype());
        for (std::int64_t n = 0; n < g.batch; ++n) {
          const T* cols_n = cols.data<T>();
          if (given_cols.defined()) cols_n = given_cols.data<T>() + n * k * p;
          else im2col(g, x.data<T>() + n * image_size, cols.data<T>());
          gemm(false, true, cout, k, p, t_data + n * cout * p, cols_n, /*accumulate=*/true, result.data<T>());
        }
        results[1] = result;
      }
      if (needs[1]) connections.zero_unconnected(results[1]);
      if (has_bias && needs[2]) {
        Tensor result({g.out_channels}, t.dtype());
        T* sum = result.data<T>();
        for (std::int64_t n = 0; n < g.batch; ++n)
          for (std::int64_t o = 0; o < g.out_channels; ++o) {
            const T* row = t_data + (n * cout + o) * p;
            T total = 0;
            for (std::int64_t i = 0; i < p; ++i) total += row[i];
            sum[o] += total;
          }
        results[2] = result;
      }
    });
    return results;
  };
  return with_attributes(record(
      std::move(y), "conv2d", std::move(inputs),
      [saved_x, kept_cols, saved_w, adjoint, connections](const Tensor& dy,
                                                          const GradMask& needs) {
        if ((needs[0] && !saved_w.defined()) || (needs[1] && !saved_x.defined()))
          fail("conv2d", "an input began requiring grad after the forward");
        // unpack() checks x was not written in place: the kept columns were copied from it.
        return adjoint(dy, needs[1] ? saved_x.unpack() : Tensor{}, needs[1] ? kept_cols : Tensor{},
                       needs[0] ? connections.connected(saved_w.unpack()) : Tensor{}, needs);
      },
      [saved_x, kept_cols, saved_w, adjoint, connections](const Tensor& h, const Tensor&,
                                                          const GradMask& needs) {
        const auto square = [](auto v) { return v * v; };
        const Tensor x_squared = needs[1] ? kernels::map_elements(saved_x.unpack(), square) : Tensor{};
        const Tensor cols_squared =
            needs[1] && kept_cols.defined() ? kernels::map_elements(kept_cols, square) : Tensor{};
        return adjoint(h, x_squared, cols_squared,
                       needs[0] ? kernels::map_elements(connections.connected(saved_w.unpack()), square)
                                : Tensor{},
                       needs);
      }), [&] { return conv2d_attributes(connections, stride, padding); });
}

}  // namespace ag
