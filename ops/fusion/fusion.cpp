// conv2d_max_pool2d (forward and backward side by side), and the fusion rules that let
// max_pool2d(relu(conv2d(...))) and subsampling2d(scaled_tanh(conv2d(...))) reach their fused ops
// from an ordinary model script.
#include "ops/fusion/fusion.hpp"

#include <memory>
#include <string>
#include <typeinfo>
#include <vector>

#include "autograd/allocator.hpp"
#include "ops/activation.hpp"
#include "ops/conv2d.hpp"
#include "ops/fusion/conv_pool.hpp"
#include "ops/pool.hpp"

namespace ag {

namespace {

thread_local bool fusion_mode = true;

kernels::PoolGeometry pool_geometry(const ConvGeometry& g, const ConvPoolOptions& options) {
  const std::int64_t kernel = options.pool_kernel;
  const std::int64_t stride = options.pool_stride == 0 ? kernel : options.pool_stride;
  if (kernel < 1 || kernel > 15)
    fail("conv2d_max_pool2d", "pool kernel must be in [1, 15], got " + std::to_string(kernel));
  if (stride < 0)
    fail("conv2d_max_pool2d",
         "pool stride must be >= 0 (0 = kernel), got " + std::to_string(stride));
  if (kernel > g.out_h || kernel > g.out_w)
    fail("conv2d_max_pool2d", "pool kernel " + std::to_string(kernel) + " is larger than the " +
                                  std::to_string(g.out_h) + "x" + std::to_string(g.out_w) +
                                  " convolution output");
  return {.kernel = kernel,
          .stride = stride,
          .out_h = (g.out_h - kernel) / stride + 1,
          .out_w = (g.out_w - kernel) / stride + 1,
          .relu = options.relu};
}

}  // namespace

Variable conv2d_max_pool2d(const Variable& x, const Variable& w, const Variable& b,
                           const ConvPoolOptions& options) {
  // x:[N,Cin,H,W]  w:[Cout,Cin,KH,KW]  b:[Cout] -> y:[N,Cout,Ph,Pw]
  const ConvGeometry g = conv_geometry(x, w, b, options.stride, options.padding);
  const kernels::PoolGeometry pool = pool_geometry(g, options);
  const bool has_bias = b.defined();
  VariableList inputs{x, w};
  if (has_bias) inputs.push_back(b);
  const bool save = needs_grad(inputs);

  // Saved for backward, and only when a gradient is wanted: x and w (shared, not copied; see
  // below) and the winner of every window, one byte per output of y (ops/fusion/conv_pool.hpp).
  const std::int64_t outputs = g.batch * g.out_channels * pool.out_h * pool.out_w;
  std::shared_ptr<std::uint8_t[]> winners =
      save ? make_cached_array<std::uint8_t>(static_cast<std::size_t>(outputs)) : nullptr;
  Tensor y = Tensor::empty({g.batch, g.out_channels, pool.out_h, pool.out_w}, x.dtype());
  dispatch(x.dtype(), [&]<class T>() {
    const T* x_data = x.value().template data<T>();
    const T* w_data = w.value().template data<T>();
    const T* b_data = has_bias ? b.value().template data<T>() : nullptr;
    if constexpr (std::is_same_v<T, float>)
      if (kernels::conv_pool_forward_avx512(g, pool, x_data, w_data, b_data, y.data<T>(),
                                            winners.get()) ||
          kernels::conv_pool_forward_avx2(g, pool, x_data, w_data, b_data, y.data<T>(),
                                          winners.get()))
        return;
    kernels::conv_pool_forward(g, pool, x_data, w_data, b_data, y.data<T>(), winners.get());
  });

  const OpName op = options.relu ? OpName("conv2d+relu+max_pool2d") : OpName("conv2d+max_pool2d");
  if (!save) return record(std::move(y), op, std::move(inputs), nullptr);
  // x is read only for grad_w and w only for grad_x, so each is saved only when the other input
  // wants a gradient (the input image of a first layer does not, so its weight is not saved).
  const SavedTensor saved_x =
      w.requires_grad() ? SavedTensor(x.value(), /*input=*/0) : SavedTensor{};
  const SavedTensor saved_w =
      x.requires_grad() ? SavedTensor(w.value(), /*input=*/1) : SavedTensor{};
  return record(
      std::move(y), op, std::move(inputs),
      [g, pool, has_bias, winners = std::move(winners), saved_x, saved_w](const Tensor& dy,
                                                                          const GradMask& needs) {
        // dy:[N, Cout, Ph, Pw] reaches the convolution only at the winners; conv2d's
        // backward of that sparse dz: grad_x (through w), grad_w (through x), grad_b.
        if ((needs[0] && !saved_w.defined()) || (needs[1] && !saved_x.defined()))
          fail("conv2d_max_pool2d", "an input began requiring grad after the forward");
        TensorList grads(has_bias ? 3 : 2);
        if (needs[0]) grads[0] = Tensor({g.batch, g.in_channels, g.height, g.width}, dy.dtype());
        if (needs[1])
          grads[1] = Tensor({g.out_channels, g.in_channels, g.kernel_h, g.kernel_w}, dy.dtype());
        if (has_bias && needs[2]) grads[2] = Tensor({g.out_channels}, dy.dtype());
        dispatch(dy.dtype(), [&]<class T>() {
          const auto out = [](Tensor& t) { return t.defined() ? t.data<T>() : nullptr; };
          T *grad_x = out(grads[0]), *grad_w = out(grads[1]),
            *grad_b = has_bias ? out(grads[2]) : nullptr;
          // The kernels read x only for grad_w and w only for grad_x.
          const T* x_data = grad_w ? saved_x.unpack().data<T>() : nullptr;
          const T* w_data = grad_x ? saved_w.unpack().data<T>() : nullptr;
          if constexpr (std::is_same_v<T, float>)
            if (kernels::conv_pool_backward_avx512(g, pool, x_data, w_data, dy.data<T>(),
                                                   winners.get(), grad_x, grad_w, grad_b) ||
                kernels::conv_pool_backward_avx2(g, pool, x_data, w_data, dy.data<T>(),
                                                 winners.get(), grad_x, grad_w, grad_b))
              return;
          kernels::conv_pool_backward(g, pool, x_data, w_data, dy.data<T>(), winners.get(), grad_x,
                                      grad_w, grad_b);
        });
        return grads;
      });
}

// ---- Fusion rules ----

bool fusion_enabled() { return fusion_mode; }

NoFusionGuard::NoFusionGuard() : previous_(fusion_mode) { fusion_mode = false; }
NoFusionGuard::~NoFusionGuard() { fusion_mode = previous_; }

namespace {

class DeferredConv2d;
// The deferred conv2d behind x, or null. (A typeid comparison, not a dynamic_cast: this runs on
// every relu and max_pool2d, and for a class with internal linkage it is one pointer compare.)
const DeferredConv2d* deferred_conv2d(const Variable& x);

// The version of v's storage (Tensor::version), taken when conv2d is called. A deferred input has
// no storage yet: whatever computes it writes fresh storage, at version 0.
std::uint64_t version_of(const Variable& v) {
  return !v.defined() || v.deferred() ? 0 : v.value().version();
}

// The activation a deferred conv2d is followed by, itself deferred.
enum class Activation { None, Relu, ScaledTanh };

// What a deferred conv2d remembers: its arguments, and the versions of their storage when conv2d
// was called. A deferred "conv2d, then relu" (or scaled tanh) also holds the deferred conv2d it
// was applied to, in `conv`, and takes its versions from it.
class DeferredConv2d final : public Deferred {
 public:
  DeferredConv2d(Shape shape, DType dtype, Variable x, Variable w, Variable b,
                 ConnectionTable connections, std::int64_t stride, std::int64_t padding)
      : Deferred(std::move(shape), dtype),
        x(std::move(x)),
        w(std::move(w)),
        b(std::move(b)),
        connections(std::move(connections)),
        stride(stride),
        padding(padding),
        curvature(curvature_enabled()),
        versions{version_of(this->x), version_of(this->w), version_of(this->b)} {}

  // An activation over the deferred conv2d `pending`, held by the Variable `conv`.
  DeferredConv2d(const DeferredConv2d& pending, Variable conv, Activation activation,
                 double amplitude = 1, double slope = 1)
      : Deferred(pending.shape(), pending.dtype()),
        x(pending.x),
        w(pending.w),
        b(pending.b),
        connections(pending.connections),
        stride(pending.stride),
        padding(pending.padding),
        conv(std::move(conv)),
        activation(activation),
        amplitude(amplitude),
        slope(slope),
        curvature(pending.curvature),
        versions{pending.versions[0], pending.versions[1], pending.versions[2]} {}

  // The unfused ops, exactly as the model script wrote them.
  Variable compute() const override {
    NoFusionGuard unfused;
    // conv checks its own inputs when it is computed
    if (activation == Activation::Relu) return ag::relu(conv);
    if (activation == Activation::ScaledTanh) return ag::scaled_tanh(conv, amplitude, slope);
    check_inputs_unchanged();
    return conv2d(x, w, b, connections, stride, padding);
  }

  // The convolution runs later than the model script called it, and reads its inputs then. An
  // input written in place in between (an optimiser step, a fill) would make the result differ from
  // the unfused ops', so that throws, as a modified saved tensor does in backward.
  void check_inputs_unchanged() const {
    const Variable* inputs[] = {&x, &w, &b};
    for (int i = 0; i < 3; ++i) {
      const std::uint64_t now = version_of(*inputs[i]);
      if (now == versions[i]) [[likely]]
        continue;
      const std::string& name = inputs[i]->name();
      fail("conv2d", "input " + std::to_string(i) + (name.empty() ? "" : " ('" + name + "')") +
                         " was modified in place after conv2d was called and before its deferred "
                         "result was computed (version " +
                         std::to_string(versions[i]) + ", now " + std::to_string(now) +
                         "); use the result before modifying its "
                         "inputs, or compute it at once under NoFusionGuard");
    }
  }

  // Whether a fused op over this chain records what the unfused ops would: the same grad mode
  // for the convolution as when it was deferred (the chain's `requires_grad` says), the same
  // curvature mode, and the convolution not computed meanwhile for another use (fusing would
  // compute it a second time).
  bool fusable_with(const Variable& chain) const {
    if (activation != Activation::None && !conv.deferred()) return false;
    if (curvature != curvature_enabled()) return false;
    return needs_grad({chain}) == needs_grad({x, w, b});
  }

  Variable x, w, b;
  ConnectionTable connections;
  std::int64_t stride, padding;
  Variable conv;
  Activation activation = Activation::None;
  double amplitude = 1, slope = 1;  // of Activation::ScaledTanh
  bool curvature;                   // whether a CurvatureGuard was alive at conv2d
  std::uint64_t versions[3];        // of x, w, b
};

const DeferredConv2d* deferred_conv2d(const Variable& x) {
  const Deferred* d = x.deferred();
  return d && typeid(*d) == typeid(DeferredConv2d) ? static_cast<const DeferredConv2d*>(d)
                                                   : nullptr;
}

// What a deferred subsampling2d over a deferred "conv2d, then scaled_tanh" (the chain) remembers:
// the chain, its own arguments and their versions, and the modes it was called in. A scaled_tanh
// over it runs the chain and both tanhs as one op; any other use runs the chain without the second.
class DeferredSubsampling final : public Deferred {
 public:
  DeferredSubsampling(Shape shape, DType dtype, Variable chain, Variable weight, Variable bias,
                      std::int64_t kernel, std::int64_t stride)
      : Deferred(std::move(shape), dtype),
        chain(std::move(chain)),
        weight(std::move(weight)),
        bias(std::move(bias)),
        kernel(kernel),
        stride(stride),
        grad(grad_enabled()),
        curvature(curvature_enabled()),
        versions{version_of(this->weight), version_of(this->bias)} {}

  Variable compute() const override { return run(std::nullopt); }

  // Whether a scaled_tanh called now records what the unfused ops would: the modes are those
  // subsampling2d was called in.
  bool joinable() const { return grad == grad_enabled() && curvature == curvature_enabled(); }

  // The chain as one op, with `tanh_after` if given. If the convolution or its tanh was computed
  // meanwhile (another use), fusing would compute it again: the rest runs unfused over it.
  Variable run(const std::optional<ScaledTanhOptions>& tanh_after) const {
    check_inputs_unchanged();
    if (const DeferredConv2d* pending = deferred_conv2d(chain);
        pending && pending->fusable_with(chain)) {
      pending->check_inputs_unchanged();
      return conv2d_scaled_tanh_subsampling2d(
          pending->x, pending->w, pending->b, weight, bias,
          {.stride = pending->stride,
           .padding = pending->padding,
           .connections = pending->connections,
           .tanh = {.amplitude = pending->amplitude, .slope = pending->slope},
           .pool_kernel = kernel,
           .pool_stride = stride,
           .tanh_after = tanh_after});
    }
    NoFusionGuard unfused;
    const Variable y = subsampling2d(chain, weight, bias, kernel, stride);
    return tanh_after ? scaled_tanh(y, tanh_after->amplitude, tanh_after->slope) : y;
  }

  // As DeferredConv2d's: the pool's weight and bias are read when the chain runs.
  void check_inputs_unchanged() const {
    const Variable* inputs[] = {&weight, &bias};
    for (int i = 0; i < 2; ++i) {
      const std::uint64_t now = version_of(*inputs[i]);
      if (now == versions[i]) [[likely]]
        continue;
      const std::string& name = inputs[i]->name();
      fail("subsampling2d",
           "input " + std::to_string(i + 1) + (name.empty() ? "" : " ('" + name + "')") +
               " was modified in place after subsampling2d was called and before its deferred "
               "result was computed (version " +
               std::to_string(versions[i]) + ", now " + std::to_string(now) +
               "); use the result before modifying its inputs, or compute it at once under "
               "NoFusionGuard");
    }
  }

  Variable chain, weight, bias;
  std::int64_t kernel, stride;
  bool grad, curvature;       // the modes subsampling2d was called in
  std::uint64_t versions[2];  // of weight, bias
};

const DeferredSubsampling* deferred_subsampling(const Variable& x) {
  const Deferred* d = x.deferred();
  return d && typeid(*d) == typeid(DeferredSubsampling)
             ? static_cast<const DeferredSubsampling*>(d)
             : nullptr;
}

}  // namespace

Variable defer_conv2d(const Variable& x, const Variable& w, const Variable& b,
                      const ConnectionTable& connections, std::int64_t stride,
                      std::int64_t padding) {
  const ConvGeometry g = conv_geometry(x, w, b, stride, padding);
  return Variable::defer(
      std::allocate_shared<DeferredConv2d>(CachingAllocator<DeferredConv2d>{},
                                           Shape{g.batch, g.out_channels, g.out_h, g.out_w},
                                           x.dtype(), x, w, b, connections, stride, padding),
      needs_grad({x, w, b}));
}

Variable fuse_relu(const Variable& x) {
  if (!fusion_mode) return {};
  const DeferredConv2d* pending = deferred_conv2d(x);
  if (!pending || pending->activation != Activation::None) return {};
  // The inputs' versions are checked when the chain is computed or pooled.
  return Variable::defer(std::allocate_shared<DeferredConv2d>(CachingAllocator<DeferredConv2d>{},
                                                              *pending, x, Activation::Relu),
                         needs_grad({x}));
}

Variable fuse_scaled_tanh(const Variable& x, double amplitude, double slope) {
  if (!fusion_mode) return {};
  if (const DeferredSubsampling* subsampling = deferred_subsampling(x);
      subsampling && subsampling->joinable())
    return subsampling->run(ScaledTanhOptions{.amplitude = amplitude, .slope = slope});
  const DeferredConv2d* pending = deferred_conv2d(x);
  if (!pending || pending->activation != Activation::None) return {};
  return Variable::defer(
      std::allocate_shared<DeferredConv2d>(CachingAllocator<DeferredConv2d>{}, *pending, x,
                                           Activation::ScaledTanh, amplitude, slope),
      needs_grad({x}));
}

Variable fuse_max_pool2d(const Variable& x, std::int64_t kernel, std::int64_t stride) {
  if (!fusion_mode) return {};
  const DeferredConv2d* pending = deferred_conv2d(x);
  // conv2d_max_pool2d's kernels take every pair of channels: a convolution with a connection
  // table pools unfused.
  if (!pending || pending->activation == Activation::ScaledTanh || kernel > 15 ||
      !pending->connections.all())
    return {};
  // The convolution under the relu was computed meanwhile (it had another use): fusing would
  // compute it a second time, so pool what is there.
  if (pending->activation == Activation::Relu && !pending->conv.deferred()) return {};
  // The fused op must record what the unfused ones would (a grad mode change in between).
  if (needs_grad({x}) != needs_grad({pending->x, pending->w, pending->b})) return {};
  pending->check_inputs_unchanged();
  return conv2d_max_pool2d(pending->x, pending->w, pending->b,
                           {.stride = pending->stride,
                            .padding = pending->padding,
                            .relu = pending->activation == Activation::Relu,
                            .pool_kernel = kernel,
                            .pool_stride = stride});
}

Variable fuse_subsampling2d(const Variable& x, const Variable& weight, const Variable& bias,
                            std::int64_t kernel, std::int64_t stride) {
  if (!fusion_mode) return {};
  const DeferredConv2d* pending = deferred_conv2d(x);
  if (!pending || pending->activation != Activation::ScaledTanh || !pending->fusable_with(x))
    return {};
  pending->check_inputs_unchanged();
  const Shape& shape = x.shape();
  return Variable::defer(
      std::allocate_shared<DeferredSubsampling>(
          CachingAllocator<DeferredSubsampling>{},
          Shape{shape[0], shape[1], (shape[2] - kernel) / stride + 1,
                (shape[3] - kernel) / stride + 1},
          x.dtype(), x, weight, bias, kernel, stride),
      needs_grad({x, weight, bias}));
}

}  // namespace ag
