// The fuzz targets as plain functions: each takes one input, runs it through a parser of untrusted
// bytes, and checks what must hold whatever the bytes are. libFuzzer calls them from the
// *_fuzz.cpp entry points (build-fuzz, clang, ASan + UBSan); the ordinary suite replays the seed
// corpora and every input that once failed through the same functions (replay_test.cpp).
//
// A target returns how the parser ended when it either read the input correctly or refused it with
// its documented exception. Anything else propagates: a PropertyViolation when a check fails, or
// whatever the parser threw that it should not have (std::bad_alloc, std::out_of_range, ...),
// which libFuzzer reports as a crash through std::terminate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <span>
#include <stdexcept>
#include <string>

namespace fuzz {

using Input = std::span<const std::uint8_t>;

/// A check on a parser's result failed: the parser accepted what it should refuse, refused what it
/// should accept, or read something other than the input holds.
class PropertyViolation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// How a parser ended on an input, when it ended well.
enum class Outcome { Read, Refused };

/// Throws PropertyViolation("<target>: <what>") when `holds` is false.
void check(bool holds, const char* target, const std::string& what);

/// Caps this process's address space (RLIMIT_AS) at its current size + `extra_bytes`, so that an
/// allocation sized by a hostile header fails instead of succeeding on an overcommitting kernel.
/// Meant for a test's child process. Returns false if the cap cannot be set.
bool cap_address_space(std::size_t extra_bytes);

/// For a death test's child: caps the address space at its size + `extra_bytes` and runs `read`.
/// Exits 0 with the message on stderr if it throws `Refusal`, 2 if an allocation fails, 1 if it
/// returns, 3 if the cap cannot be set.
template <class Refusal, class Read>
[[noreturn]] void exit_with_read_outcome(std::size_t extra_bytes, Read&& read) {
  if (!cap_address_space(extra_bytes)) std::_Exit(3);
  try {
    read();
  } catch (const Refusal& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::_Exit(0);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "allocation failed\n");
    std::_Exit(2);
  }
  std::_Exit(1);
}

/// IDX reader (nn::read_idx_images / read_idx_labels) on a file holding the input.
/// Byte 0 selects: bit 0 labels (else images), bit 1 gzip the rest before writing it. The rest is
/// the file. Except for raw bytes that start with the gzip magic, the result is compared with a
/// reference reading of the format (accepted exactly when valid, with the same content).
Outcome idx_input(Input input);

/// safetensors reader (nn::decode_safetensors). The input is the file. A decoded file must hold
/// exactly the bytes its header points at, and encode -> decode must give it back unchanged.
Outcome safetensors_input(Input input);

/// PNG/PGM decoding and MNIST preprocessing (nn::decode_image, preprocess_digit, to_input_tensor).
/// Byte 0 bit 0: rewrite every PNG chunk's CRC to the right value first, so mutations reach past
/// the CRC checks into libpng's decoding. The rest is the file. A decoded image has its declared
/// size and pixels in [0, 255]; a small one survives encode_png -> decode_png; the digit is 28x28
/// in [0, 255].
Outcome image_input(Input input);

/// The /api/predict body parser (web::image_from_body) and the preprocessing after it. Byte 0
/// picks the Content-Type (JSON, PNG, JSON with parameters, text/plain); the rest is the body.
/// Refusals are HttpErrors with status 400 or 415 and a one-line message; an accepted image has
/// at most 2048 pixels a side, its declared size and pixels in [0, 255].
Outcome predict_body_input(Input input);

}  // namespace fuzz
