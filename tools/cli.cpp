// Option parsing shared by the subcommands.
#include "tools/cli.hpp"

#include <iostream>

namespace cli {

bool parse(std::string_view command, std::string_view synopsis, po::options_description& options,
           const std::vector<std::string>& args, po::variables_map& vm,
           const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help");
  try {
    po::command_line_parser parser(args);
    parser.options(options);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: lenet " << command << ' ' << synopsis << "\n\n" << options << '\n';
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }
  return true;
}

void require_positive(std::string_view option, double value) {
  if (!(value > 0))
    throw UsageError("--" + std::string(option) + " must be positive, got " + std::to_string(value));
}

}  // namespace cli
