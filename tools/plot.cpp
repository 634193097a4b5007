// Runs gnuplot on a generated script; the PNG goes to a temporary file renamed into place.
#include "tools/plot.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace cli {

namespace {
// gnuplot strings are single-quoted; a quote inside is doubled.
std::string quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}
}  // namespace

void plot_training_curves(const std::string& csv_path, const std::string& png_path, const std::string& title) {
  const std::string tmp = png_path + ".tmp.png";
  // Columns (see train.cpp): 1 kind, 2 epoch, 3 epoch_progress, ..., 6 loss, 7 batch_accuracy,
  // 8 train_accuracy, 9 test_loss, 10 test_accuracy.
  const std::string script =
      "set terminal pngcairo size 1000,700 font 'sans,10'\n"
      "set output " + quoted(tmp) + "\n"
      "set datafile separator ','\n"
      "set key autotitle columnhead\n"
      "set grid\n"
      "set autoscale xfix\n"
      "set multiplot layout 2,1 title " + quoted(title) + "\n"
      "set ylabel 'loss'\n"
      "set logscale y\n"
      "plot " + quoted(csv_path) + " using 3:(strcol(1) eq 'step' ? column(6) : NaN) with lines lc rgb '#4477aa' title 'training loss (mean between log lines)', "
      "'' using 3:(strcol(1) eq 'epoch' ? column(9) : NaN) with linespoints lc rgb '#cc3311' pt 7 title 'test loss'\n"
      "unset logscale y\n"
      "set xlabel 'epoch'\n"
      "set ylabel 'error rate (%)'\n"
      "set logscale y\n"
      "set key top right\n"
      "plot " + quoted(csv_path) + " using 3:(strcol(1) eq 'step' ? 100 * (1 - column(8)) : NaN) with lines lc rgb '#4477aa' title 'training error (running, this epoch)', "
      "'' using 3:(strcol(1) eq 'epoch' ? 100 * (1 - column(10)) : NaN) with linespoints lc rgb '#cc3311' pt 7 title 'test error', "
      "'' using 3:(strcol(1) eq 'epoch' && strcol(15) ne '' ? 100 * (1 - column(15)) : NaN) with linespoints lc rgb '#228833' pt 5 title 'training error (whole set, after the epoch)'\n"
      "unset multiplot\n";
  FILE* pipe = ::popen("gnuplot 2>&1", "w");
  if (!pipe) throw std::runtime_error("cannot start gnuplot");
  std::fwrite(script.data(), 1, script.size(), pipe);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::filesystem::remove(tmp);
    throw std::runtime_error(png_path + ": gnuplot failed" +
                             (WIFEXITED(status) && WEXITSTATUS(status) == 127
                                  ? std::string(" (is gnuplot installed? apt-get install gnuplot-nox)")
                                  : std::string()));
  }
  std::filesystem::rename(tmp, png_path);
}

}  // namespace cli
