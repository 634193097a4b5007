// Tensor storage, construction and the few element-wise helpers the engine itself needs.
#include "autograd/tensor.hpp"

#include "autograd/allocator.hpp"
#include "autograd/eigen.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <numbers>
#include <sstream>

namespace ag {

void fail(std::string_view op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

std::string_view dtype_name(DType dtype) {
  return dtype == DType::Float64 ? "float64" : "float32";
}

std::size_t dtype_size(DType dtype) { return dtype == DType::Float64 ? 8 : 4; }

std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

std::int64_t shape_numel(const Shape& shape) {
  std::int64_t n = 1;
  for (std::int64_t d : shape) {
    if (d < 0) fail("shape", "negative dimension in " + shape_str(shape));
    // Checked by the multiply itself: a 64-bit division per dimension would cost more than the
    // multiply, on every tensor made.
    if (__builtin_mul_overflow(n, d, &n))
      fail("shape", "element count overflows in " + shape_str(shape));
  }
  return n;
}

// ---- Generator ----

namespace {
thread_local Generator* scoped_generator = nullptr;
}  // namespace

Generator& current_generator() {
  thread_local Generator fallback(0);
  return scoped_generator ? *scoped_generator : fallback;
}

GeneratorScope::GeneratorScope(Generator& generator) : previous_(scoped_generator) {
  scoped_generator = &generator;
}

GeneratorScope::~GeneratorScope() { scoped_generator = previous_; }

double Generator::uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }

double Generator::uniform(double low, double high) { return low + (high - low) * uniform(); }

double Generator::normal() {
  // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
  const double u1 = 1.0 - uniform(), u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

std::uint64_t Generator::below(std::uint64_t bound) {
  if (bound == 0) fail("Generator::below", "bound must be positive");
  // Rejection sampling removes the modulo bias.
  const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() -
                              std::numeric_limits<std::uint64_t>::max() % bound;
  std::uint64_t x;
  do x = engine_();
  while (x >= limit);
  return x % bound;
}

std::string Generator::state() const {
  std::ostringstream out;
  out << engine_;
  return out.str();
}

void Generator::set_state(const std::string& state) {
  std::istringstream in(state);
  std::mt19937_64 engine;
  in >> engine;
  if (in.fail()) fail("Generator::set_state", "malformed generator state");
  engine_ = engine;
}

// ---- Tensor ----

// The data comes from the caching allocator (64-byte aligned: a full AVX-512 register, and a cache
// line), and so does the Storage object with its shared_ptr control block (one block, from
// allocate_shared): a steady training step allocates nothing new.
Storage::Storage(std::size_t bytes)
    : data_(static_cast<std::byte*>(allocate_block(bytes))), bytes_(bytes) {}

Storage::~Storage() { free_block(data_, bytes_); }

namespace {
std::shared_ptr<Storage> allocate(std::size_t bytes) {
  return std::allocate_shared<Storage>(CachingAllocator<Storage>{}, bytes);
}

// Writes value everywhere without counting it as an in-place write: for tensors being made.
void fill_fresh(Tensor& t, double value) {
  dispatch(t.dtype(),
           [&]<class T>() { std::fill_n(t.data<T>(), t.numel(), static_cast<T>(value)); });
}
}  // namespace

Tensor::Tensor(Shape shape, DType dtype)
    : shape_(std::move(shape)), numel_(shape_numel(shape_)), dtype_(dtype) {
  storage_ = allocate(nbytes());
  data_ = storage_->data();
  std::memset(data_, 0, nbytes());
}

Tensor Tensor::empty(Shape shape, DType dtype) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.numel_ = shape_numel(t.shape_);
  t.dtype_ = dtype;
  t.storage_ = allocate(t.nbytes());
  t.data_ = t.storage_->data();
  return t;
}

Tensor Tensor::zeros(Shape shape, DType dtype) { return Tensor(std::move(shape), dtype); }

Tensor Tensor::ones(Shape shape, DType dtype) { return full(std::move(shape), 1.0, dtype); }

Tensor Tensor::full(Shape shape, double value, DType dtype) {
  Tensor t = empty(std::move(shape), dtype);
  fill_fresh(t, value);
  return t;
}

Tensor Tensor::from(Shape shape, const std::vector<double>& values, DType dtype) {
  Tensor t(std::move(shape), dtype);
  if (static_cast<std::int64_t>(values.size()) != t.numel())
    fail("Tensor::from", std::to_string(values.size()) + " values for shape " +
                             shape_str(t.shape()));
  dispatch(dtype, [&]<class T>() { std::copy(values.begin(), values.end(), t.data<T>()); });
  return t;
}

Tensor Tensor::from(Shape shape, const std::vector<float>& values) {
  Tensor t(std::move(shape), DType::Float32);
  if (static_cast<std::int64_t>(values.size()) != t.numel())
    fail("Tensor::from", std::to_string(values.size()) + " values for shape " +
                             shape_str(t.shape()));
  std::copy(values.begin(), values.end(), t.data<float>());
  return t;
}

Tensor Tensor::uniform(Shape shape, double low, double high, Generator& gen, DType dtype) {
  Tensor t(std::move(shape), dtype);
  dispatch(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(gen.uniform(low, high));
  });
  return t;
}

Tensor Tensor::normal(Shape shape, double mean, double stddev, Generator& gen, DType dtype) {
  Tensor t(std::move(shape), dtype);
  dispatch(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      p[i] = static_cast<T>(mean + stddev * gen.normal());
  });
  return t;
}

std::int64_t Tensor::size(std::int64_t d) const {
  const std::int64_t n = dim();
  if (d < -n || d >= n)
    fail("Tensor::size", "dimension " + std::to_string(d) + " out of range for shape " +
                             shape_str(shape_));
  return shape_[static_cast<std::size_t>(d < 0 ? d + n : d)];
}

double Tensor::at(std::int64_t i) const {
  if (i < 0 || i >= numel_)
    fail("Tensor::at", "index " + std::to_string(i) + " out of range for shape " +
                           shape_str(shape_));
  return dispatch(dtype_, [&]<class T>() { return static_cast<double>(data<T>()[i]); });
}

void Tensor::set(std::int64_t i, double value) {
  if (i < 0 || i >= numel_)
    fail("Tensor::set", "index " + std::to_string(i) + " out of range for shape " +
                            shape_str(shape_));
  dispatch(dtype_, [&]<class T>() { data<T>()[i] = static_cast<T>(value); });
  bump_version();
}

double Tensor::item() const {
  if (numel_ != 1) fail("Tensor::item", "tensor of shape " + shape_str(shape_) + " is not one element");
  return at(0);
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> out(static_cast<std::size_t>(numel_));
  dispatch(dtype_, [&]<class T>() { std::copy(data<T>(), data<T>() + numel_, out.begin()); });
  return out;
}

Tensor Tensor::reshape(Shape shape) const {
  std::int64_t known = 1;
  int inferred = -1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (inferred >= 0) fail("reshape", "more than one -1 in " + shape_str(shape));
      inferred = static_cast<int>(i);
    } else {
      if (shape[i] < 0) fail("reshape", "negative dimension in " + shape_str(shape));
      known *= shape[i];
    }
  }
  if (inferred >= 0) {
    if (known == 0 || numel_ % known != 0)
      fail("reshape", "cannot infer -1 reshaping " + shape_str(shape_) + " to " + shape_str(shape));
    shape[static_cast<std::size_t>(inferred)] = numel_ / known;
  }
  if (shape_numel(shape) != numel_)
    fail("reshape", "cannot reshape " + shape_str(shape_) + " to " + shape_str(shape));
  Tensor view = *this;
  view.shape_ = std::move(shape);
  return view;
}

Tensor Tensor::clone() const {
  if (!defined()) return {};
  Tensor copy(shape_, dtype_);
  std::memcpy(copy.raw_data(), raw_data(), nbytes());
  return copy;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return clone();
  Tensor out(shape_, dtype);
  dispatch(dtype_, [&]<class From>() {
    dispatch(dtype, [&]<class To>() {
      std::transform(data<From>(), data<From>() + numel_, out.data<To>(),
                     [](From v) { return static_cast<To>(v); });
    });
  });
  return out;
}

void Tensor::fill(double value) {
  fill_fresh(*this, value);
  bump_version();
}

void Tensor::add_(const Tensor& other, std::string_view op) {
  if (shape_ != other.shape_ || dtype_ != other.dtype_)
    fail(op, "shape " + shape_str(shape_) + " " + std::string(dtype_name(dtype_)) +
                 " cannot take " + shape_str(other.shape_) + " " +
                 std::string(dtype_name(other.dtype_)));
  dispatch(dtype_, [&]<class T>() { as_array<T>(*this) += as_array<T>(other); });
  bump_version();
}

}  // namespace ag
