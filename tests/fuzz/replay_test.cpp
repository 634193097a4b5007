// Replays every committed fuzz input through its target (targets.hpp) in the ordinary suite: the
// seed corpora under tests/fuzz/corpus/<target>/ and each input that once made a target fail,
// kept under tests/fuzz/regressions/<target>/ with a note in docs/reliability.md. A regression
// fails here as it failed under the fuzzer, without clang or sanitizers.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/fuzz/targets.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_under(const fs::path& dir) {
  std::vector<fs::path> files;
  if (fs::is_directory(dir))
    for (const fs::directory_entry& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs every corpus and regression input of `target` through `run`; returns how many there were.
template <class Run> std::size_t replay(const std::string& target, Run run) {
  std::size_t count = 0;
  for (const char* kind : {"corpus", "regressions"})
    for (const fs::path& path : inputs_under(fs::path("tests/fuzz") / kind / target)) {
      const std::vector<std::uint8_t> bytes = read_bytes(path);
      try {
        run(fuzz::Input(bytes));
      } catch (const std::exception& e) {
        ADD_FAILURE() << path.string() << ": " << e.what();
      }
      ++count;
    }
  return count;
}

TEST(FuzzReplay, IdxInputsAreReadCorrectlyOrRefusedCleanly) {
  EXPECT_GE(replay("idx", fuzz::idx_input), 8u) << "the idx seed corpus is missing";
}

TEST(FuzzReplay, SafetensorsInputsAreReadCorrectlyOrRefusedCleanly) {
  EXPECT_GE(replay("safetensors", fuzz::safetensors_input), 8u) << "the safetensors seed corpus is missing";
}

TEST(FuzzReplay, ImageInputsAreDecodedAndPreprocessedOrRefusedCleanly) {
  EXPECT_GE(replay("image", fuzz::image_input), 8u) << "the image seed corpus is missing";
}

}  // namespace
