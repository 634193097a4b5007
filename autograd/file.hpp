// Whole-file I/O with the guarantee the project makes about users' files: a write either replaces
// the file completely or leaves the old one untouched.
#pragma once

#include <string>
#include <string_view>

namespace ag {

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, then renames it over
/// `path`. On any failure the temporary file is removed, `path` keeps its old contents, and a
/// std::runtime_error names the file and the reason.
void write_file_atomically(const std::string& path, std::string_view bytes);

/// The whole file; throws std::runtime_error naming the file if it cannot be read.
std::string read_file(const std::string& path);

}  // namespace ag
