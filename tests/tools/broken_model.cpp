// The `lenet` command with two more models, each broken for one verb (tests/tools/cli_test.cpp):
//  - wrong_tanh, whose backward is deliberately wrong: a tanh recorded with dx = dy * (1 - y)
//    instead of dy * (1 - y^2). `broken_model gradcheck --model wrong_tanh` must fail: the check a
//    user runs after writing an op must catch it.
//  - no_onnx, which uses an op of its own (softsign) that has no ONNX form: `broken_model export
//    --model no_onnx` must fail in one line naming the op and the model, and write nothing.
#include <cmath>

#include "models/nn/layers.hpp"
#include "models/registry.hpp"
#include "ops/ops.hpp"
#include "tools/cli.hpp"

namespace {

ag::Variable wrong_tanh(const ag::Variable& x) {
  ag::Tensor y = ag::tanh(x.detach()).value();
  const ag::SavedTensor saved_y(y, ag::SavedTensor::kOutput);
  return ag::record(std::move(y), "tanh", {x}, [saved_y](const ag::Tensor& dy, const ag::GradMask&) {
    const ag::Tensor& y = saved_y.unpack();
    ag::Tensor dx = ag::Tensor::empty(dy.shape(), dy.dtype());
    ag::dispatch(dy.dtype(), [&]<class T>() {
      for (std::int64_t i = 0; i < dx.numel(); ++i)
        dx.data<T>()[i] = dy.data<T>()[i] * (T(1) - y.data<T>()[i]);  // should be 1 - y^2
    });
    return ag::TensorList{dx};
  });
}

class WrongTanh : public nn::Model {
 public:
  explicit WrongTanh(ag::Generator& gen)
      : Model({.channels = 1, .height = 28, .width = 28}), fc({.in = 28 * 28, .out = 10}, gen) {
    register_module("fc", fc);
  }
  ag::Variable forward(const ag::Variable& x) const override { return wrong_tanh(fc(ag::flatten(x))); }
  nn::Linear fc;
};

// y = x / (1 + |x|), recorded as an op of its own.
ag::Variable softsign(const ag::Variable& x) {
  ag::Tensor y = ag::Tensor::empty(x.shape(), x.dtype());
  for (std::int64_t i = 0; i < y.numel(); ++i) y.set(i, x.value().at(i) / (1 + std::abs(x.value().at(i))));
  const ag::SavedTensor saved_x(x.value(), /*input=*/0);
  return ag::record(std::move(y), "softsign", {x}, [saved_x](const ag::Tensor& dy, const ag::GradMask&) {
    const ag::Tensor& x = saved_x.unpack();
    ag::Tensor dx = ag::Tensor::empty(dy.shape(), dy.dtype());
    for (std::int64_t i = 0; i < dx.numel(); ++i) {
      const double d = 1 + std::abs(x.at(i));
      dx.set(i, dy.at(i) / (d * d));
    }
    return ag::TensorList{dx};
  });
}

class NoOnnx : public nn::Model {
 public:
  explicit NoOnnx(ag::Generator& gen)
      : Model({.channels = 1, .height = 28, .width = 28, .normalization = {}}), fc({.in = 28 * 28, .out = 10}, gen) {
    register_module("fc", fc);
  }
  ag::Variable forward(const ag::Variable& x) const override { return softsign(fc(ag::flatten(x))); }
  nn::Linear fc;
};

}  // namespace

int main(int argc, char** argv) {
  nn::register_model({"wrong_tanh", "a linear layer and a tanh with a wrong backward", nn::make_model<WrongTanh>, {}});
  nn::register_model({"no_onnx", "a linear layer and softsign, an op without an ONNX form", nn::make_model<NoOnnx>, {}});
  return cli::run(argc, argv);
}
