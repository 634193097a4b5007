// safetensors writer and validating reader. See serialize.hpp for the layout.
#include "models/nn/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>

#include <nlohmann/json.hpp>

#include "autograd/file.hpp"

namespace nn {

// Tensor bytes are copied as they sit in memory; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using Json = nlohmann::json;

// The reference implementation's limit: a header larger than this is refused before it is read.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

[[noreturn]] void weights_error(const std::string& source, const std::string& problem) {
  throw WeightsError(source + ": " + problem);
}

const char* dtype_code(ag::DType dtype) { return dtype == ag::DType::Float64 ? "F64" : "F32"; }

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

/// One header entry, checked in isolation; the layout of all entries is checked afterwards.
struct Entry {
  std::string name;
  ag::DType dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin, end;
};

std::string offsets_text(const Entry& entry) {
  std::string text = "[";  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on "[" + string
  text += std::to_string(entry.begin);
  text += ", ";
  text += std::to_string(entry.end);
  return text + "]";
}

/// A JSON value's type for messages: "a string", "a number", ...
std::string json_kind(const Json& value) {
  const std::string type = value.type_name();  // "string", "number", "array", "object", ...
  return (type == "array" || type == "object" ? "an " : "a ") + type;
}

Entry parse_entry(const std::string& source, const std::string& name, const Json& info) {
  const std::string where = "tensor \"" + name + "\"";
  if (!info.is_object()) weights_error(source, where + " is " + json_kind(info) + ", not an object");

  Entry entry{.name = name, .dtype = ag::DType::Float32, .shape = {}, .begin = 0, .end = 0};
  const auto dtype = info.find("dtype");
  if (dtype == info.end() || !dtype->is_string()) weights_error(source, where + " has no string \"dtype\"");
  const std::string code = dtype->get<std::string>();
  if (code == "F32") entry.dtype = ag::DType::Float32;
  else if (code == "F64") entry.dtype = ag::DType::Float64;
  else weights_error(source, where + " has dtype " + code + "; only F32 and F64 are supported");

  const auto shape = info.find("shape");
  if (shape == info.end() || !shape->is_array()) weights_error(source, where + " has no \"shape\" array");
  for (const Json& size : *shape) {
    if (!size.is_number_unsigned())
      weights_error(source, where + " has a shape entry " + size.dump() + "; sizes are non-negative integers");
    entry.shape.push_back(size.get<std::uint64_t>());
  }

  const auto offsets = info.find("data_offsets");
  if (offsets == info.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned())
    weights_error(source, where + " needs \"data_offsets\": [begin, end] with non-negative integers");
  entry.begin = (*offsets)[0].get<std::uint64_t>();
  entry.end = (*offsets)[1].get<std::uint64_t>();
  if (entry.end < entry.begin)
    weights_error(source, where + " has data_offsets " + offsets_text(entry) + " that end before they begin");

  // Size in bytes, checked for overflow: a hostile shape must not wrap around to a small number.
  std::uint64_t bytes = ag::dtype_size(entry.dtype);
  for (std::uint64_t size : entry.shape)
    if (__builtin_mul_overflow(bytes, size, &bytes))
      weights_error(source, where + " has shape " + shape_text(entry.shape) + " whose byte size overflows");
  // Shapes must also fit ag::Shape (int64).
  for (std::uint64_t size : entry.shape)
    if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      weights_error(source, where + " has a size too large in shape " + shape_text(entry.shape));
  if (entry.end - entry.begin != bytes)
    weights_error(source, where + " has data_offsets " + offsets_text(entry) + " (" +
                              std::to_string(entry.end - entry.begin) +
                              " bytes) but shape " + shape_text(entry.shape) + " of " + code + " needs " +
                              std::to_string(bytes) + " bytes");
  return entry;
}

Metadata parse_metadata(const std::string& source, const Json& value) {
  Metadata metadata;
  if (value.is_null()) return metadata;
  if (!value.is_object())
    weights_error(source, "__metadata__ is " + json_kind(value) + ", not an object of strings");
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string())
      weights_error(source, "__metadata__ value for \"" + key + "\" is " + json_kind(item) +
                                ", not a string");
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

/// Parses the header, refusing duplicate keys at any depth (nlohmann would silently keep one).
Json parse_header(const std::string& source, std::string_view header) {
  if (header.empty() || header.front() != '{')
    weights_error(source, "header does not start with '{' (not a safetensors file?)");
  std::vector<std::set<std::string>> keys_per_object;
  const auto check_duplicates = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) keys_per_object.emplace_back();
    else if (event == Json::parse_event_t::object_end) keys_per_object.pop_back();
    else if (event == Json::parse_event_t::key &&
             !keys_per_object.back().insert(parsed.get<std::string>()).second)
      weights_error(source, "header has the key \"" + parsed.get<std::string>() + "\" twice");
    return true;
  };
  try {
    return Json::parse(header.begin(), header.end(), check_duplicates);
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 9: ..."
    weights_error(source, std::string("header is not valid JSON: ") + e.what());
  }
}

}  // namespace

std::string encode_safetensors(const NamedTensors& tensors, const Metadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;  // first, as the reference writes it
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty() || name == "__metadata__")
      ag::fail("encode_safetensors", "tensor name \"" + name + "\" is reserved or empty");
    if (!names.insert(name).second) ag::fail("encode_safetensors", "tensor name \"" + name + "\" appears twice");
    if (!tensor.defined()) ag::fail("encode_safetensors", "tensor \"" + name + "\" is undefined");
    header[name] = {{"dtype", dtype_code(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + tensor.nbytes()}}};
    offset += tensor.nbytes();
  }
  std::string header_text = header.dump();
  // Spaces up to a multiple of 8, so the data starts 8-byte aligned (JSON ignores them).
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  const std::uint64_t header_length = header_text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((header_length >> (8 * i)) & 0xff));
  bytes += header_text;
  for (const auto& [name, tensor] : tensors)
    if (tensor.nbytes() > 0) bytes.append(static_cast<const char*>(tensor.raw_data()), tensor.nbytes());
  return bytes;
}

void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata) {
  ag::write_file_atomically(path, encode_safetensors(tensors, metadata));
}

Safetensors decode_safetensors(std::string_view bytes, const std::string& source) {
  if (bytes.size() < 8)
    weights_error(source, "too short for a safetensors file (" + std::to_string(bytes.size()) +
                              " bytes; the header length alone takes 8)");
  std::uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i)
    header_length = (header_length << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  if (header_length > kMaxHeaderBytes)
    weights_error(source, "header length " + std::to_string(header_length) + " exceeds the limit of " +
                              std::to_string(kMaxHeaderBytes) + " bytes");
  const std::uint64_t after_length = bytes.size() - 8;
  if (header_length > after_length)
    weights_error(source, "header length " + std::to_string(header_length) +
                              " runs past the end of the file (" + std::to_string(after_length) +
                              " bytes follow the length field)");

  const Json header = parse_header(source, bytes.substr(8, header_length));
  if (!header.is_object()) weights_error(source, "header is " + json_kind(header) + ", not a JSON object");

  Safetensors file;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") file.metadata = parse_metadata(source, value);
    else entries.push_back(parse_entry(source, key, value));
  }

  // Sorted by offset, the tensors must tile the data section exactly: from 0, no gaps, no overlaps,
  // up to the end of the file. (Zero-byte tensors sort before others at the same offset.)
  const std::string_view data = bytes.substr(8 + header_length);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin > covered)
      weights_error(source, previous == nullptr
                                ? std::string("the first tensor \"") + entry.name + "\" starts at byte " +
                                      std::to_string(entry.begin) + " of the data, not 0"
                                : std::string("gap: bytes [") + std::to_string(covered) + ", " +
                                      std::to_string(entry.begin) + ") of the data between \"" +
                                      previous->name + "\" and \"" + entry.name + "\" belong to no tensor");
    if (entry.begin < covered)
      weights_error(source, "tensor \"" + entry.name + "\" (data_offsets " + offsets_text(entry) + ") overlaps \"" +
                                previous->name + "\", which ends at byte " + std::to_string(covered));
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data.size())
    weights_error(source, "the tensors end at byte " + std::to_string(covered) +
                              " of the data but the data section has " + std::to_string(data.size()) +
                              " bytes");

  // Only now, with every size bounded by the file's, is anything allocated.
  for (const Entry& entry : entries) {
    ag::Shape shape(entry.shape.begin(), entry.shape.end());
    ag::Tensor tensor(std::move(shape), entry.dtype);
    if (tensor.nbytes() > 0) std::memcpy(tensor.raw_data(), data.data() + entry.begin, tensor.nbytes());
    file.tensors.emplace(entry.name, std::move(tensor));
  }
  return file;
}

Safetensors load_safetensors(const std::string& path) {
  std::string bytes;
  try {
    bytes = ag::read_file(path);
  } catch (const std::runtime_error& e) {
    throw WeightsError(e.what());  // already "<path>: <reason>"
  }
  return decode_safetensors(bytes, path);
}

void copy_into(const Safetensors& file, const std::string& source, const LoadTargets& targets) {
  // Check everything first, so a file that does not fit leaves the model untouched.
  std::set<std::string> expected;
  for (const auto& [name, target] : targets) {
    if (target == nullptr || !target->defined())
      ag::fail("load_into", "target \"" + name + "\" has no tensor to load into");
    if (!expected.insert(name).second) ag::fail("load_into", "target name \"" + name + "\" appears twice");
  }
  std::string missing, unexpected;
  for (const auto& [name, target] : targets)
    if (!file.tensors.contains(name)) missing += (missing.empty() ? "" : ", ") + name;
  for (const auto& [name, tensor] : file.tensors)
    if (!expected.contains(name)) unexpected += (unexpected.empty() ? "" : ", ") + name;
  if (!missing.empty())
    weights_error(source, "missing " + missing + " (the model has " + std::to_string(targets.size()) +
                              " tensors, the file " + std::to_string(file.tensors.size()) + ")");
  if (!unexpected.empty())
    weights_error(source, "unexpected " + unexpected + " (not in the model)");
  for (const auto& [name, target] : targets) {
    const ag::Tensor& stored = file.tensors.at(name);
    if (stored.shape() != target->shape())
      weights_error(source, name + " has shape " + ag::shape_str(stored.shape()) + ", the model expects " +
                                ag::shape_str(target->shape()));
  }
  // Write into the existing storage: Variables and optimiser state share it.
  for (const auto& [name, target] : targets) {
    const ag::Tensor& stored = file.tensors.at(name);
    const ag::Tensor converted = stored.dtype() == target->dtype() ? stored : stored.to(target->dtype());
    if (converted.nbytes() > 0) std::memcpy(target->raw_data(), converted.raw_data(), converted.nbytes());
  }
}

Metadata load_into(const std::string& path, const LoadTargets& targets) {
  Safetensors file = load_safetensors(path);
  copy_into(file, path, targets);
  return std::move(file.metadata);
}

}  // namespace nn
