// Tests for the safetensors writer and its validating reader, and for loading into named tensors.
// Malformed files are built byte by byte here, so each test shows one rule being enforced.
#include "models/nn/safetensors.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "autograd/file.hpp"

namespace {

/// A safetensors file from its parts: 8-byte little-endian header length, header, data. No padding,
/// so tests control every byte.
std::string file_bytes(const std::string& header, const std::string& data) {
  std::string bytes;
  const std::uint64_t length = header.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  return bytes + header + data;
}

std::string header_length_only(std::uint64_t length, std::size_t extra_bytes) {
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  return bytes + std::string(extra_bytes, '{');
}

::testing::AssertionResult Contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\"\n  does not contain\n\"" << part << "\"";
}

/// The message of the WeightsError that decoding `bytes` (named "w.safetensors") throws.
std::string decode_error(const std::string& bytes) {
  try {
    nn::decode_safetensors(bytes, "w.safetensors");
  } catch (const nn::WeightsError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("w.safetensors: ", 0), 0u) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected nn::WeightsError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected nn::WeightsError, the file was accepted";
  return {};
}

template <class Fn> std::string weights_error_message(Fn&& fn) {
  try {
    fn();
  } catch (const nn::WeightsError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected nn::WeightsError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected nn::WeightsError, nothing was thrown";
  return {};
}

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "serialize_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> directory_listing() const {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(dir_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::filesystem::path dir_;
};

// ---- Writing and reading back ----

TEST_F(SafetensorsFileTest, RoundTripsFloat32AndFloat64WithMetadata) {
  const ag::Tensor weight = ag::Tensor::from({2, 3}, std::vector<float>{0.1f, -2.5f, 3e-8f, 7.f, -0.f, 1e30f});
  const ag::Tensor bias = ag::Tensor::from({4}, {0.1, 1.0 / 3.0, -1e-300, 12345.678901234567}, ag::DType::Float64);
  const ag::Tensor scalar = ag::Tensor::from(ag::Shape{}, std::vector<double>{42.0});
  const ag::Tensor empty = ag::Tensor::zeros({0, 5});
  const nn::Metadata metadata{{"epoch", "3"}, {"note", "ünïcode \"quoted\""}};
  nn::save_safetensors(path("w.safetensors"),
                       {{"fc.weight", weight}, {"fc.bias", bias}, {"scalar", scalar}, {"empty", empty}},
                       metadata);

  const nn::Safetensors file = nn::load_safetensors(path("w.safetensors"));
  EXPECT_EQ(file.metadata, metadata);
  ASSERT_EQ(file.tensors.size(), 4u);
  for (const auto& [name, original] : std::vector<std::pair<std::string, ag::Tensor>>{
           {"fc.weight", weight}, {"fc.bias", bias}, {"scalar", scalar}, {"empty", empty}}) {
    const ag::Tensor& loaded = file.tensors.at(name);
    EXPECT_EQ(loaded.shape(), original.shape()) << name;
    EXPECT_EQ(loaded.dtype(), original.dtype()) << name;
    EXPECT_EQ(loaded.to_vector(), original.to_vector()) << name;  // bit-exact, not approximately
  }
}

TEST_F(SafetensorsFileTest, WritesTheReferenceLayout) {
  const std::string bytes = nn::encode_safetensors(
      {{"w", ag::Tensor::from({2}, std::vector<float>{1.0f, -2.0f})}}, {{"framework", "lenet"}});
  // {"__metadata__":{"framework":"lenet"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}
  // is 91 bytes; padded with spaces to 96 so the data starts 8-byte aligned.
  const std::string header =
      R"({"__metadata__":{"framework":"lenet"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(bytes.size(), 8u + 96u + 8u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x60\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(bytes.substr(8, 96), header + "     ");
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, little-endian.
  EXPECT_EQ(bytes.substr(104), std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8));
}

TEST_F(SafetensorsFileTest, KeepsTheGivenOrderAndPadsEveryHeader) {
  for (int names = 1; names <= 9; ++names) {
    nn::NamedTensors tensors;
    for (int i = 0; i < names; ++i)  // names of varying lengths, reverse alphabetical
      tensors.push_back({std::string(static_cast<std::size_t>(i + 1), static_cast<char>('z' - i)),
                         ag::Tensor::zeros({i + 1}, i % 2 ? ag::DType::Float64 : ag::DType::Float32)});
    const std::string bytes = nn::encode_safetensors(tensors);
    std::uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
    EXPECT_EQ(length % 8, 0u) << names;
    const nlohmann::json header = nlohmann::json::parse(bytes.substr(8, length));
    std::uint64_t offset = 0;
    for (const auto& [name, tensor] : tensors) {
      EXPECT_EQ(header.at(name).at("data_offsets"), (nlohmann::json{offset, offset + tensor.nbytes()})) << name;
      offset += tensor.nbytes();
    }
    EXPECT_EQ(bytes.size(), 8 + length + offset);
  }
}

TEST_F(SafetensorsFileTest, ReadsAFileAsTheReferenceWriterLaysItOut) {
  // The reference's own test file (bindings/python/tests/test_simple.py), with F32 for its I32:
  // metadata first, header padded with spaces, a zero-filled [2, 2] tensor.
  const std::string header =
      R"({"__metadata__":{"framework":"pt"},"test1":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}       )";
  const nn::Safetensors file = nn::decode_safetensors(file_bytes(header, std::string(16, '\0')), "ref");
  EXPECT_EQ(file.metadata, (nn::Metadata{{"framework", "pt"}}));
  EXPECT_EQ(file.tensors.at("test1").shape(), (ag::Shape{2, 2}));
  EXPECT_EQ(file.tensors.at("test1").to_vector(), (std::vector<double>{0, 0, 0, 0}));
}

TEST_F(SafetensorsFileTest, AcceptsTensorsListedOutOfOffsetOrder) {
  const std::string header = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  const nn::Safetensors file = nn::decode_safetensors(
      file_bytes(header, std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8)), "f");
  EXPECT_EQ(file.tensors.at("a").item(), 1.0);
  EXPECT_EQ(file.tensors.at("b").item(), 2.0);
}

TEST_F(SafetensorsFileTest, RefusesBadNamesWhenWriting) {
  const ag::Tensor t = ag::Tensor::zeros({1});
  EXPECT_THROW(nn::encode_safetensors({{"a", t}, {"a", t}}), std::invalid_argument);
  EXPECT_THROW(nn::encode_safetensors({{"__metadata__", t}}), std::invalid_argument);
  EXPECT_THROW(nn::encode_safetensors({{"", t}}), std::invalid_argument);
  EXPECT_THROW(nn::encode_safetensors({{"u", ag::Tensor()}}), std::invalid_argument);
}

// ---- The reader's rules ----

TEST(SafetensorsReader, RefusesAFileShorterThanTheLengthField) {
  EXPECT_TRUE(Contains(decode_error(std::string("\x10\0\0", 3)), "too short for a safetensors file (3 bytes"));
}

TEST(SafetensorsReader, RefusesAHeaderLengthOverTheLimit) {
  EXPECT_TRUE(Contains(decode_error(header_length_only(100'000'001, 16)),
                       "header length 100000001 exceeds the limit of 100000000 bytes"));
  EXPECT_TRUE(Contains(decode_error(header_length_only(~std::uint64_t{0}, 16)), "exceeds the limit"));
}

TEST(SafetensorsReader, RefusesAHeaderRunningPastTheFile) {
  EXPECT_TRUE(Contains(decode_error(header_length_only(1000, 10)),
                       "header length 1000 runs past the end of the file (10 bytes follow the length field)"));
}

TEST(SafetensorsReader, RefusesHeadersThatAreNotJsonObjects) {
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"a": {"dtype": )", "")), "header is not valid JSON: "));
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"a": 1} trailing)", "")), "header is not valid JSON"));
  EXPECT_TRUE(Contains(decode_error(file_bytes("[1, 2]", "")), "header does not start with '{'"));
  EXPECT_TRUE(Contains(decode_error(file_bytes("\xff\xfe", "")), "header does not start with '{'"));
  // Invalid UTF-8 inside a string.
  EXPECT_TRUE(Contains(decode_error(file_bytes("{\"\xff\": 1}", "")), "header is not valid JSON"));
}

TEST(SafetensorsReader, RefusesDuplicateKeys) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(8, '\0'))), "header has the key \"a\" twice"));
  const std::string inner = R"({"a":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(inner, std::string(4, '\0'))), "key \"dtype\" twice"));
}

TEST(SafetensorsReader, RefusesAGapBetweenTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(12, '\0'))),
                       "gap: bytes [4, 8) of the data between \"a\" and \"b\" belong to no tensor"));
}

TEST(SafetensorsReader, RefusesOverlappingTensors) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(12, '\0'))),
                       "tensor \"b\" (data_offsets [4, 12]) overlaps \"a\", which ends at byte 8"));
}

TEST(SafetensorsReader, RefusesDataNotStartingAtZero) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(8, '\0'))),
                       "the first tensor \"a\" starts at byte 4 of the data, not 0"));
}

TEST(SafetensorsReader, RefusesDataNotEndingAtTheEndOfTheFile) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(6, '\0'))),
                       "the tensors end at byte 4 of the data but the data section has 6 bytes"));
  const std::string longer = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(longer, std::string(4, '\0'))),
                       "the tensors end at byte 8 of the data but the data section has 4 bytes"));
  EXPECT_TRUE(Contains(decode_error(file_bytes("{}", "x")), "the tensors end at byte 0"));
}

TEST(SafetensorsReader, RefusesALengthThatDisagreesWithTheShape) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(8, '\0'))),
                       "tensor \"a\" has data_offsets [0, 8] (8 bytes) but shape [3] of F32 needs 12 bytes"));
  const std::string f64 = R"({"a":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(f64, std::string(8, '\0'))), "of F64 needs 16 bytes"));
}

TEST(SafetensorsReader, RefusesAShapeWhoseSizeOverflows) {
  // 2^32 * 2^32 elements wrap to 0 in 64 bits; with offsets [0, 0] a careless check would pass.
  const std::string header =
      R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, "")),
                       "tensor \"a\" has shape [4294967296, 4294967296] whose byte size overflows"));
  // The element count fits but the byte count (times 4) does not.
  const std::string bytes = R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(bytes, "")), "whose byte size overflows"));
}

TEST(SafetensorsReader, RefusesUnsupportedDtypes) {
  // Byte for byte the reference's own test file (I32), which this project has no use for.
  const std::string header =
      R"({"__metadata__":{"framework":"pt"},"test1":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}       )";
  EXPECT_TRUE(Contains(decode_error(file_bytes(header, std::string(16, '\0'))),
                       "tensor \"test1\" has dtype I32; only F32 and F64 are supported"));
  const std::string bf16 = R"({"x":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(bf16, "\0\0")), "has dtype BF16"));
}

TEST(SafetensorsReader, RefusesMalformedEntries) {
  const std::string negative = R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(negative, std::string(4, '\0'))),
                       "shape entry -1; sizes are non-negative integers"));
  const std::string fractional = R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(fractional, std::string(4, '\0'))), "shape entry 1.5"));
  const std::string no_offsets = R"({"a":{"dtype":"F32","shape":[1]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(no_offsets, std::string(4, '\0'))), "needs \"data_offsets\""));
  const std::string backwards = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(backwards, std::string(4, '\0'))), "end before they begin"));
  const std::string no_dtype = R"({"a":{"shape":[1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(Contains(decode_error(file_bytes(no_dtype, std::string(4, '\0'))), "has no string \"dtype\""));
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"a":[1]})", "")), "tensor \"a\" is an array, not an object"));
}

TEST(SafetensorsReader, RefusesMetadataThatIsNotStringToString) {
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"__metadata__":{"epoch":3}})", "")),
                       "__metadata__ value for \"epoch\" is a number, not a string"));
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"__metadata__":{"a":{"b":"c"}}})", "")),
                       "__metadata__ value for \"a\" is an object, not a string"));
  EXPECT_TRUE(Contains(decode_error(file_bytes(R"({"__metadata__":["x"]})", "")),
                       "__metadata__ is an array, not an object of strings"));
}

TEST_F(SafetensorsFileTest, NamesAMissingFile) {
  const std::string missing = path("nope.safetensors");
  EXPECT_TRUE(Contains(weights_error_message([&] { nn::load_safetensors(missing); }), missing + ": cannot open"));
}

// ---- Loading into a model's tensors ----

TEST_F(SafetensorsFileTest, LoadsIntoTargetsInPlaceConvertingDtype) {
  nn::save_safetensors(path("weights.safetensors"),
                       {{"conv1.weight", ag::Tensor::from({2, 2}, std::vector<float>{1.5f, -2.f, 0.25f, 8.f})},
                        {"conv1.bias", ag::Tensor::from({2}, {0.1, -0.2}, ag::DType::Float64)}},
                       {{"epoch", "7"}});
  ag::Tensor weight = ag::Tensor::zeros({2, 2}, ag::DType::Float64);  // converted from F32
  ag::Tensor bias = ag::Tensor::zeros({2}, ag::DType::Float32);       // converted from F64
  const ag::Tensor weight_alias = weight;  // e.g. a Variable sharing the parameter's storage
  const nn::Metadata metadata =
      nn::load_into(path("weights.safetensors"), {{"conv1.bias", &bias}, {"conv1.weight", &weight}});
  EXPECT_EQ(metadata, (nn::Metadata{{"epoch", "7"}}));
  EXPECT_EQ(weight_alias.to_vector(), (std::vector<double>{1.5, -2, 0.25, 8}));
  EXPECT_EQ(weight.dtype(), ag::DType::Float64);
  EXPECT_EQ(bias.dtype(), ag::DType::Float32);
  EXPECT_EQ(bias.to_vector(), (std::vector<double>{0.1f, -0.2f}));
}

class LoadIntoMismatchTest : public SafetensorsFileTest {
 protected:
  void SetUp() override {
    SafetensorsFileTest::SetUp();
    file_ = path("weights.safetensors");
    nn::save_safetensors(file_, {{"conv1.weight", ag::Tensor::full({6, 1, 3, 3}, 1.0)},
                                 {"conv1.bias", ag::Tensor::full({6}, 2.0)}});
  }
  std::string file_;
  ag::Tensor weight_ = ag::Tensor::full({6, 1, 5, 5}, -1.0);
  ag::Tensor bias_ = ag::Tensor::full({6}, -1.0);
};

TEST_F(LoadIntoMismatchTest, RefusesAWrongShapeAndChangesNothing) {
  EXPECT_EQ(weights_error_message([&] {
              nn::load_into(file_, {{"conv1.bias", &bias_}, {"conv1.weight", &weight_}});
            }),
            file_ + ": conv1.weight has shape [6, 1, 3, 3], the model expects [6, 1, 5, 5]");
  // conv1.bias fits, but a file that does not fit as a whole loads nothing.
  EXPECT_EQ(bias_.to_vector(), std::vector<double>(6, -1.0));
}

TEST_F(LoadIntoMismatchTest, RefusesMissingNames) {
  ag::Tensor fc_bias = ag::Tensor::zeros({10});
  ag::Tensor weight = ag::Tensor::zeros({6, 1, 3, 3});
  EXPECT_EQ(weights_error_message([&] {
              nn::load_into(file_, {{"conv1.weight", &weight}, {"conv1.bias", &bias_}, {"fc3.bias", &fc_bias}});
            }),
            file_ + ": missing fc3.bias (the model has 3 tensors, the file 2)");
  EXPECT_EQ(weight.to_vector(), std::vector<double>(54, 0.0));
}

TEST_F(LoadIntoMismatchTest, RefusesUnexpectedNames) {
  EXPECT_EQ(weights_error_message([&] { nn::load_into(file_, {{"conv1.bias", &bias_}}); }),
            file_ + ": unexpected conv1.weight (not in the model)");
  EXPECT_EQ(bias_.to_vector(), std::vector<double>(6, -1.0));
}

// ---- Atomic writes ----

/// Saves with files capped at `limit` bytes, then exits: 0 with the error on stderr if the save
/// failed, 1 if it succeeded. Meant to run in a death test's child process.
[[noreturn]] void save_with_file_size_limit(const std::string& file, rlim_t limit,
                                            const nn::NamedTensors& tensors) {
  ::signal(SIGXFSZ, SIG_IGN);  // make write() fail with EFBIG instead of killing the process
  const rlimit cap{limit, limit};
  if (::setrlimit(RLIMIT_FSIZE, &cap) != 0) std::_Exit(3);
  try {
    nn::save_safetensors(file, tensors);
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::_Exit(0);
  }
  std::_Exit(1);
}

TEST_F(SafetensorsFileTest, AFailedWriteLeavesTheOldFileIntact) {
  const std::string file = path("weights.safetensors");
  nn::save_safetensors(file, {{"w", ag::Tensor::full({4}, 1.0)}});
  const std::string old_bytes = ag::read_file(file);

  // The new file (40 KB) exceeds a 4 KB file-size limit, so the write fails half-way; done in a
  // child process so the limit cannot leak into other tests. (A read-only directory would not do:
  // tests may run as root.)
  EXPECT_EXIT(save_with_file_size_limit(file, 4096, {{"w", ag::Tensor::full({10000}, 2.0)}}),
              ::testing::ExitedWithCode(0), "weights.safetensors: write failed");
  EXPECT_EQ(ag::read_file(file), old_bytes);
  EXPECT_EQ(directory_listing(), std::vector<std::string>{"weights.safetensors"}) << "temporary file left";
  EXPECT_EQ(nn::load_safetensors(file).tensors.at("w").to_vector(), std::vector<double>(4, 1.0));
}

TEST_F(SafetensorsFileTest, WritingOverADirectoryFailsAndLeavesItAlone) {
  std::filesystem::create_directory(path("weights.safetensors"));
  std::ofstream(path("weights.safetensors/keep")) << "kept";
  EXPECT_THROW(nn::save_safetensors(path("weights.safetensors"), {{"w", ag::Tensor::zeros({1})}}),
               std::runtime_error);
  EXPECT_EQ(ag::read_file(path("weights.safetensors/keep")), "kept");
  EXPECT_EQ(directory_listing(), std::vector<std::string>{"weights.safetensors"}) << "temporary file left";
}

}  // namespace
