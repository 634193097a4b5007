// Training curves drawn by gnuplot (Debian's gnuplot-nox) from the metrics CSV.
#pragma once

#include <string>

namespace cli {

/// Draws loss and accuracy against epochs from `csv_path` (as written by lenet train) into a PNG at
/// `png_path` titled `title`, atomically. Throws std::runtime_error if gnuplot is missing or fails.
void plot_training_curves(const std::string& csv_path, const std::string& png_path, const std::string& title);

}  // namespace cli
