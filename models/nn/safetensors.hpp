// Weights files in the safetensors format (https://github.com/huggingface/safetensors), readable by
// PyTorch, JAX and friends:
//   [8 bytes: header length n, little-endian u64]
//   [n bytes: JSON {"conv1.weight": {"dtype": "F32", "shape": [6, 1, 5, 5], "data_offsets": [0, 600]},
//                   ..., "__metadata__": {"key": "value"}}, padded with spaces to a multiple of 8]
//   [the tensors' bytes, little-endian, back to back]
// The reader checks everything the reference implementation checks, and each problem is one line
// naming the file.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autograd/tensor.hpp"

namespace nn {

/// A weights file that cannot be used: unreadable, malformed, or not fitting the model. The message
/// is one line, "<file>: <problem>".
class WeightsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Tensors in file order (the writer's order is the data order).
using NamedTensors = std::vector<std::pair<std::string, ag::Tensor>>;
/// Free-form string pairs stored under "__metadata__" (e.g. {"epoch": "3"}).
using Metadata = std::map<std::string, std::string>;

/// A decoded file: tensors by name and the metadata.
struct Safetensors {
  std::map<std::string, ag::Tensor> tensors;
  Metadata metadata;
};

/// The bytes of a safetensors file holding `tensors` (Float32 as F32, Float64 as F64) in the given
/// order, plus `metadata`. Throws std::invalid_argument for a duplicate, empty or reserved
/// ("__metadata__") name, or an undefined tensor.
std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata = {});

/// encode_safetensors written with ag::write_file_atomically: the file is replaced whole or not at
/// all. Throws std::runtime_error naming the file if it cannot be written.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const Metadata& metadata = {});

/// Decodes and validates a file's bytes; `source` names the file in error messages. Only F32 and
/// F64 tensors are supported. Throws WeightsError.
Safetensors decode_safetensors(std::string_view bytes, const std::string& source);

/// Reads and decodes `path`. Throws WeightsError.
Safetensors load_safetensors(const std::string& path);

/// A model's named tensors to be overwritten (its parameters' values, say). Pointers, because
/// loading writes into the existing storage, which Variables and optimisers share.
using LoadTargets = std::vector<std::pair<std::string, ag::Tensor*>>;

/// Copies the tensors of `path` into `targets`, converting F32/F64 to each target's dtype, and
/// returns the file's metadata. The file must hold exactly the targets' names with their shapes;
/// otherwise a WeightsError says what does not fit, e.g.
///   weights.safetensors: conv1.weight has shape [6, 1, 3, 3], the model expects [6, 1, 5, 5]
/// and no target is changed.
Metadata load_into(const std::string& path, const LoadTargets& targets);

/// load_into for an already decoded file; `source` names it in error messages.
void copy_into(const Safetensors& file, const std::string& source, const LoadTargets& targets);

}  // namespace nn
