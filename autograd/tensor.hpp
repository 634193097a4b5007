// Tensor: a contiguous, row-major N-d array of float32 or float64, plus the seeded random generator
// that fills it. No autodiff lives here; see variable.hpp for that.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/container/small_vector.hpp>

namespace ag {

enum class DType { Float32, Float64 };

std::string_view dtype_name(DType dtype);  // "float32" / "float64"
std::size_t dtype_size(DType dtype);       // 4 / 8

/// Dimensions, outermost first. Up to five are stored inline (as PyTorch does), so making a tensor
/// does not allocate for its shape; more spill to the heap.
using Shape = boost::container::small_vector<std::int64_t, 5>;

std::string shape_str(const Shape& shape);  // "[2, 3, 4]"
/// Product of the dimensions; throws if any is negative or the product overflows.
std::int64_t shape_numel(const Shape& shape);

/// Every random choice in the project (initialisation, shuffling, augmentation) draws from one of
/// these, so a seed reproduces a run bit for bit. The distributions are written out here rather than
/// taken from <random>, whose distributions may differ between standard libraries.
class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : engine_(seed) {}
  std::uint64_t next() { return engine_(); }
  double uniform();                          // [0, 1), 53 random bits
  double uniform(double low, double high);   // [low, high)
  double normal();                           // N(0, 1), Box-Muller
  std::uint64_t below(std::uint64_t bound);  // [0, bound), unbiased
  std::string state() const;                 // the engine's full state, for checkpoints
  void set_state(const std::string& state);

 private:
  std::mt19937_64 engine_;
};

/// SplitMix64's finaliser: distinct inputs give unrelated seeds, for generators of their own that
/// are derived from a run's seed (a shard's, a step's, a distorted image's).
constexpr std::uint64_t mix_seed(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// The generator that ops drawing random numbers inside a forward (dropout) use on this thread:
/// the one the innermost live GeneratorScope names, else a thread-local Generator(0). Training
/// gives each shard of each step a scope of its own, so a seed reproduces every draw.
Generator& current_generator();

/// While alive, current_generator() on this thread is `generator`.
class GeneratorScope {
 public:
  explicit GeneratorScope(Generator& generator);
  ~GeneratorScope();
  GeneratorScope(const GeneratorScope&) = delete;
  GeneratorScope& operator=(const GeneratorScope&) = delete;

 private:
  Generator* previous_;
};

/// The memory behind a Tensor and every copy or reshape view of it: a block from the caching
/// allocator, and the storage's version counter. Every in-place write through the Tensor API
/// (fill, set, add_) and Variable::mutable_value() bumps the version, so a tensor saved for
/// backward can tell whether it still holds what the forward saw (SavedTensor, variable.hpp).
/// Kernels that write a fresh output through data<T>() do not bump it: nobody can have saved a
/// tensor that is being made. The counter is a relaxed atomic: data-parallel replicas read the
/// version of shared parameters from several threads.
class Storage {
 public:
  explicit Storage(std::size_t bytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  std::byte* data() const { return data_; }
  std::uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::byte* data_;
  std::size_t bytes_;
  std::atomic<std::uint64_t> version_{0};
};

/// A Tensor is a cheap handle: copies share storage (like torch.Tensor); clone() copies the data.
/// A default-constructed Tensor is "undefined" (no storage), which is how "no gradient" is spelled.
class Tensor {
 public:
  Tensor() = default;
  Tensor(const Tensor&) = default;
  Tensor& operator=(const Tensor&) = default;
  /// A moved-from Tensor is undefined.
  Tensor(Tensor&& other) noexcept
      : storage_(std::move(other.storage_)), data_(std::exchange(other.data_, nullptr)),
        shape_(std::move(other.shape_)), numel_(other.numel_), dtype_(other.dtype_) {}
  Tensor& operator=(Tensor&& other) noexcept {
    if (this == &other) return *this;
    storage_ = std::move(other.storage_);
    data_ = std::exchange(other.data_, nullptr);
    shape_ = std::move(other.shape_);
    numel_ = other.numel_;
    dtype_ = other.dtype_;
    return *this;
  }
  /// Zero-filled tensor.
  explicit Tensor(Shape shape, DType dtype = DType::Float32);

  static Tensor zeros(Shape shape, DType dtype = DType::Float32);
  /// Uninitialised storage, for kernels that write every element of their output.
  static Tensor empty(Shape shape, DType dtype = DType::Float32);
  static Tensor ones(Shape shape, DType dtype = DType::Float32);
  static Tensor full(Shape shape, double value, DType dtype = DType::Float32);
  /// Values in row-major order, converted to dtype; their count must match the shape.
  static Tensor from(Shape shape, const std::vector<double>& values, DType dtype = DType::Float32);
  static Tensor from(Shape shape, const std::vector<float>& values);
  static Tensor uniform(Shape shape, double low, double high, Generator& gen,
                        DType dtype = DType::Float32);
  static Tensor normal(Shape shape, double mean, double stddev, Generator& gen,
                       DType dtype = DType::Float32);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  std::int64_t dim() const { return static_cast<std::int64_t>(shape_.size()); }
  /// Size of dimension d; negative d counts from the end.
  std::int64_t size(std::int64_t d) const;
  std::int64_t numel() const { return numel_; }
  std::size_t nbytes() const { return static_cast<std::size_t>(numel_) * dtype_size(dtype_); }

  /// Typed element pointer; throws if T does not match the dtype.
  template <class T> T* data();
  template <class T> const T* data() const;
  void* raw_data() { return data_; }
  const void* raw_data() const { return data_; }

  /// Element access by flat index, converting through double. For tests and tools, not hot loops.
  double at(std::int64_t flat_index) const;
  /// An in-place write: bumps the version (see Storage).
  void set(std::int64_t flat_index, double value);
  /// The single element of a one-element tensor.
  double item() const;
  std::vector<double> to_vector() const;

  /// Same storage seen with another shape; one dimension may be -1 (inferred).
  Tensor reshape(Shape shape) const;
  Tensor clone() const;
  Tensor to(DType dtype) const;

  // In-place writes: each bumps the storage's version (see Storage).
  void fill(double value);
  /// this += other; same shape and dtype, else throws naming `op` and both shapes.
  void add_(const Tensor& other, std::string_view op = "add_");

  /// How many in-place writes the storage has seen (shared with its views); 0 when undefined.
  std::uint64_t version() const { return storage_ ? storage_->version() : 0; }
  /// Records an in-place write made some other way (through data<T>() into a tensor that may have
  /// been saved for backward). Variable::mutable_value() calls it.
  void bump_version() {
    if (storage_) storage_->bump_version();
  }
  /// True when no other Tensor shares this storage (so it may be adopted or written in place).
  bool is_unique() const { return storage_.use_count() == 1; }
  bool same_storage(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  std::shared_ptr<Storage> storage_;
  std::byte* data_ = nullptr;  // storage_->data(), kept here so that data<T>() is one load
  Shape shape_;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::Float32;
};

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }

template <class T> T* Tensor::data() {
  if (dtype_ != dtype_of<T>())
    throw std::invalid_argument("Tensor::data: tensor is " + std::string(dtype_name(dtype_)));
  return static_cast<T*>(raw_data());
}
template <class T> const T* Tensor::data() const {
  return const_cast<Tensor*>(this)->data<T>();
}

/// Runs `fn.template operator()<T>()` with T = float or double, chosen by dtype; kernels are
/// written once as templates and every op works in both precisions:
///   return dispatch(x.dtype(), [&]<class T>() { ... x.data<T>() ... });
template <class Fn> decltype(auto) dispatch(DType dtype, Fn&& fn) {
  if (dtype == DType::Float64) return fn.template operator()<double>();
  return fn.template operator()<float>();
}

/// Throws std::invalid_argument("<op>: <what>"). Every validation message names its op.
[[noreturn]] void fail(std::string_view op, const std::string& what);

}  // namespace ag
