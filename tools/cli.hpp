// What every `lenet` subcommand shares: option parsing with --help, and the usage-error type that
// main turns into one line and exit status 2.
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

int train(const std::vector<std::string>& args);
int eval(const std::vector<std::string>& args);
int predict(const std::vector<std::string>& args);
int graph(const std::vector<std::string>& args);
int serve(const std::vector<std::string>& args);
int bench(const std::vector<std::string>& args);

}  // namespace cli
