// The `lenet` command with one more model whose backward is deliberately wrong: a tanh recorded
// with dx = dy * (1 - y) instead of dy * (1 - y^2). `broken_model gradcheck --model wrong_tanh`
// must fail (tests/tools/cli_test.cpp): the check a user runs after writing an op must catch it.
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

}  // namespace

int main(int argc, char** argv) {
  nn::register_model({"wrong_tanh", "a linear layer and a tanh with a wrong backward", nn::make_model<WrongTanh>, {}});
  return cli::run(argc, argv);
}
