// What every `lenet` subcommand shares: option parsing with --help, the usage-error type that main
// turns into one line and exit status 2, and where default files (weights, MNIST) are found.
#pragma once

#include <boost/program_options.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "models/registry.hpp"

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

/// The value of --model NAME (or --model=NAME) in `args`, read before the other options because
/// the model decides their defaults; "lenet5" when absent.
std::string model_option(const std::vector<std::string>& args);

/// Adds --model to a verb's options (parsed again there, so that --help lists it).
void add_model_option(po::options_description& options);

/// The default of --weights for a model: its shipped weights, models/<name>.safetensors.
std::string default_weights(const nn::ModelEntry& entry);

/// A registered model with the weights of a file.
struct LoadedModel {
  const nn::ModelEntry* entry = nullptr;
  std::unique_ptr<nn::Model> model = {};
  nn::Metadata metadata = {};  // the file's
};

/// entry's model with the weights of `path` (refused, naming both, if the file records another
/// model).
LoadedModel load_model(const nn::ModelEntry& entry, const std::string& path);

/// The whole `lenet` command: argv[1] names the verb. Returns the exit status.
int run(int argc, char** argv);

int train(const std::vector<std::string>& args);
int eval(const std::vector<std::string>& args);
int predict(const std::vector<std::string>& args);
int graph(const std::vector<std::string>& args);
int serve(const std::vector<std::string>& args);
int bench(const std::vector<std::string>& args);
int models(const std::vector<std::string>& args);
int gradcheck(const std::vector<std::string>& args);
/// `lenet export` (export is a C++ keyword).
int export_model(const std::vector<std::string>& args);

}  // namespace cli
