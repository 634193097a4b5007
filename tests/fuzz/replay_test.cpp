// Replays every committed fuzz input through its target (targets.hpp) in the ordinary suite: the
// seed corpora under tests/fuzz/corpus/<target>/ and each input that once made a target fail,
// kept under tests/fuzz/regressions/<target>/ and listed in docs/reliability.md. Inputs run in a
// child process with its address space capped, so an input that makes a reader allocate what a
// header merely claims fails here as it failed under the fuzzer, without clang or sanitizers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "models/data/digit_image.hpp"
#include "tests/fuzz/targets.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> inputs_of(const std::string& target) {
  std::vector<fs::path> files;
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fs::path("tests/fuzz") / kind / target;
    if (fs::is_directory(dir))
      for (const fs::directory_entry& entry : fs::directory_iterator(dir))
        if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Runs `inputs` through `target` with the address space capped at its size + 256 MiB, then exits:
/// 0 after printing "replayed <n> inputs", 1 after printing the first input that failed.
/// Meant to run in a death test's child.
[[noreturn]] void replay(const std::vector<fs::path>& inputs, fuzz::Outcome (*target)(fuzz::Input)) {
  if (!fuzz::cap_address_space(std::size_t{256} << 20)) std::_Exit(3);
  for (const fs::path& path : inputs) {
    const std::vector<std::uint8_t> bytes = read_bytes(path);
    try {
      target(fuzz::Input(bytes));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), e.what());
      std::_Exit(1);
    }
  }
  std::fprintf(stderr, "replayed %zu inputs\n", inputs.size());
  std::_Exit(0);
}

void expect_replays_cleanly(const std::string& target, fuzz::Outcome (*run)(fuzz::Input)) {
  const std::vector<fs::path> inputs = inputs_of(target);
  ASSERT_GE(inputs.size(), 8u) << "the " << target << " seed corpus is missing (run from the source root)";
  EXPECT_EXIT(replay(inputs, run), ::testing::ExitedWithCode(0), "replayed " + std::to_string(inputs.size()));
}

TEST(FuzzReplay, IdxInputsAreReadCorrectlyOrRefusedCleanly) { expect_replays_cleanly("idx", fuzz::idx_input); }

TEST(FuzzReplay, SafetensorsInputsAreReadCorrectlyOrRefusedCleanly) {
  expect_replays_cleanly("safetensors", fuzz::safetensors_input);
}

TEST(FuzzReplay, ImageInputsAreDecodedAndPreprocessedOrRefusedCleanly) {
  expect_replays_cleanly("image", fuzz::image_input);
}

TEST(FuzzReplay, PredictBodiesAreParsedOrRefusedWithAClientError) {
  expect_replays_cleanly("predict_body", fuzz::predict_body_input);
}

// ---- Findings, one test each (the inputs are also under tests/fuzz/regressions/) ----

/// decode_png's message for `bytes` in a child with 256 MiB to spare, or "allocation failed".
[[noreturn]] void decode_png_with_little_memory(const std::string& bytes) {
  fuzz::exit_with_read_outcome<nn::ImageError>(std::size_t{256} << 20, [&] { nn::decode_png(bytes, "body.png"); });
}

TEST(FuzzRegressions, PngChunkClaimingNineHundredMegabytesIsRefusedBeforeLibpngAllocatesIt) {
  // fuzz_image, first 10-minute run: a 70-byte PNG whose second chunk (zTXt) declares
  // 0x36353533 = 909,456,691 bytes. libpng allocated the declared length before reading it.
  const unsigned char png[] = {
      0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
      0x00, 0x1c, 0x00, 0x00, 0x00, 0x1c, 0x08, 0x00, 0x00, 0x00, 0x00, 0x57, 0x66, 0x80, 0x48, 0x36, 0x35, 0x35,
      0x33, 0x7a, 0x54, 0x58, 0x74, 0x36, 0x00, 0x00, 0x00, 0x17, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x60,
      0x1a, 0xb6, 0xe0, 0xfb, 0xa0, 0x07, 0x00, 0xf8, 0x5b, 0x3d, 0xc1, 0x00, 0x4e, 0x60, 0x82};
  const std::string bytes(reinterpret_cast<const char*>(png), sizeof png);
  EXPECT_EXIT(decode_png_with_little_memory(bytes), ::testing::ExitedWithCode(0),
              "body.png: truncated PNG: chunk zTXt at byte 33 declares 909456691 bytes of data, but only 28 "
              "bytes follow its header, CRC included");
}

TEST(FuzzRegressions, PgmSampleAtMaxvalScalesToExactly255ForEveryMaxval) {
  // fuzz_image, run 3: "P2 3 1 505 5 505 0" decoded its middle pixel as 255.00002, outside the
  // documented 0..255, because the scale factor 255/505 was rounded to float first.
  for (int maxval = 1; maxval <= 65535; ++maxval) {
    const std::string pgm = "P2 2 1 " + std::to_string(maxval) + " 0 " + std::to_string(maxval) + "\n";
    const nn::GrayImage image = nn::decode_pgm(pgm);
    ASSERT_EQ(image.pixels[0], 0.0F) << pgm;
    ASSERT_EQ(image.pixels[1], 255.0F) << pgm;
  }
}

TEST(FuzzRegressions, PgmMagicNumberMustBeFollowedByWhitespace) {
  // The same input began "P23 1 505": read as a 3-pixel-wide P2 image. Netpbm requires whitespace
  // (or a comment) after the magic number.
  try {
    nn::decode_pgm("P23 1 505  5\n  505  0", "x.pgm");
    ADD_FAILURE() << "accepted";
  } catch (const nn::ImageError& e) {
    EXPECT_STREQ(e.what(), "x.pgm: bad PGM: no whitespace after the magic number P2");
  }
  EXPECT_EQ(nn::decode_pgm("P2#comment\n1 1 9 9").pixels.at(0), 255.0F);
}

}  // namespace
