// What every `lenet` subcommand shares: option parsing with --help, the usage-error type that main
// turns into one line and exit status 2, and where default files (weights, MNIST) are found.
#pragma once

#include <boost/program_options.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace cli {

namespace po = boost::program_options;

/// Bad command-line use: printed as one line, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses `args` against `options` (and `positional`, if given), storing into `vm`. Prints usage
/// and returns false when --help was asked for; throws UsageError on anything unknown or malformed.
bool parse(std::string_view command, std::string_view synopsis, po::options_description& options,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional = nullptr);

/// Throws UsageError unless value > 0.
void require_positive(std::string_view option, double value);

/// The default of a --threads option: one per core, up to 4 (the shards of a batch of 64 stay
/// large enough to be efficient).
int default_threads();

/// Throws UsageError unless 1 <= threads <= 64.
void require_thread_count(int threads);

/// A default file or directory found nowhere (see resolve_path): printed as one line, exit status 1.
struct MissingPath : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The path a file or directory option stands for. Given explicitly, it is used exactly as given
/// (relative to the current directory, no searching). Left at its default, a path relative to the
/// repository root such as models/lenet5.safetensors, it is looked for under the current directory,
/// then under the lenet binary's directory and its parents, at most three levels up (the binary is
/// <root>/build*/tools/lenet), so the shipped weights and data are found from anywhere. The first
/// that exists wins; when none does, throws MissingPath naming every absolute path tried, then
/// `hint` if given.
std::string resolve_path(const po::variables_map& vm, const std::string& option, std::string_view hint = {});

/// resolve_path's hint for the MNIST directory.
inline constexpr std::string_view kFetchMnistHint = "tools/fetch-mnist downloads MNIST";

int train(const std::vector<std::string>& args);
int eval(const std::vector<std::string>& args);
int predict(const std::vector<std::string>& args);
int graph(const std::vector<std::string>& args);
int serve(const std::vector<std::string>& args);
int bench(const std::vector<std::string>& args);

}  // namespace cli
