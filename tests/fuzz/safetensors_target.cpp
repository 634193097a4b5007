// Fuzz target: the safetensors reader. A decoded file is checked against its own header (each
// tensor holds the bytes its data_offsets point at) and must survive encode -> decode unchanged.
// See targets.hpp.
#include <cstring>
#include <string_view>

#include <nlohmann/json.hpp>

#include "models/nn/safetensors.hpp"
#include "tests/fuzz/targets.hpp"

namespace fuzz {

namespace {

bool same_tensor(const ag::Tensor& a, const ag::Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0);
}

}  // namespace

Outcome safetensors_input(Input input) {
  const std::string_view bytes(reinterpret_cast<const char*>(input.data()), input.size());
  nn::Safetensors file;
  try {
    file = nn::decode_safetensors(bytes, "fuzz.safetensors");
  } catch (const nn::WeightsError& error) {
    const std::string message = error.what();
    check(message.rfind("fuzz.safetensors: ", 0) == 0 && message.find('\n') == std::string::npos,
          "safetensors", "error message is not one line naming the file: " + message);
    return Outcome::Refused;
  }

  // The header the reader accepted, parsed again here to find where each tensor's bytes are.
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | input[static_cast<std::size_t>(i)];
  const auto header = nlohmann::json::parse(bytes.substr(8, header_length));
  const std::string_view data = bytes.substr(8 + header_length);
  std::size_t tensor_entries = 0;
  std::uint64_t data_bytes = 0;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    ++tensor_entries;
    const auto found = file.tensors.find(name);
    check(found != file.tensors.end(), "safetensors", "tensor \"" + name + "\" was not returned");
    const ag::Tensor& tensor = found->second;
    const auto begin = info.at("data_offsets")[0].get<std::uint64_t>();
    const auto end = info.at("data_offsets")[1].get<std::uint64_t>();
    check(end - begin == tensor.nbytes() && end <= data.size(), "safetensors",
          "tensor \"" + name + "\" has a size other than its data_offsets span");
    check(tensor.nbytes() == 0 || std::memcmp(tensor.raw_data(), data.data() + begin, tensor.nbytes()) == 0,
          "safetensors", "tensor \"" + name + "\" holds other bytes than its data_offsets span");
    data_bytes += tensor.nbytes();
  }
  check(tensor_entries == file.tensors.size(), "safetensors", "more tensors returned than in the header");
  check(data_bytes == data.size(), "safetensors", "the tensors do not cover the data section exactly");

  // encode_safetensors refuses an empty tensor name, which the format itself allows.
  if (file.tensors.contains("")) return Outcome::Read;
  nn::NamedTensors named(file.tensors.begin(), file.tensors.end());
  const nn::Safetensors again = nn::decode_safetensors(nn::encode_safetensors(named, file.metadata), "again");
  check(again.metadata == file.metadata, "safetensors", "metadata changed in encode -> decode");
  check(again.tensors.size() == file.tensors.size(), "safetensors", "tensor count changed in encode -> decode");
  for (const auto& [name, tensor] : file.tensors)
    check(again.tensors.contains(name) && same_tensor(again.tensors.at(name), tensor), "safetensors",
          "tensor \"" + name + "\" changed in encode -> decode");
  return Outcome::Read;
}

}  // namespace fuzz
