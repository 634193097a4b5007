// Option parsing and default paths shared by the subcommands.
#include "tools/cli.hpp"

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <thread>

namespace cli {

namespace fs = std::filesystem;

namespace {

// The binary is <root>/build*/tools/lenet: the root is two levels up; one more allows a build
// directory nested one deeper.
constexpr std::size_t kLevelsAboveBinary = 3;

// The lenet binary's directory and its parents up to kLevelsAboveBinary, nearest first; empty if
// /proc/self/exe cannot be read.
std::vector<fs::path> directories_from_binary() {
  std::error_code error;
  const fs::path binary = fs::read_symlink("/proc/self/exe", error);
  if (error) return {};
  std::vector<fs::path> directories;
  for (fs::path directory = binary.parent_path(); directories.size() <= kLevelsAboveBinary;
       directory = directory.parent_path()) {
    directories.push_back(directory);
    if (directory == directory.root_path()) break;
  }
  return directories;
}

}  // namespace

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

std::string model_option(const std::vector<std::string>& args) {
  std::string name = "lenet5";
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--model") {
      if (i + 1 == args.size()) throw UsageError("the required argument for option '--model' is missing");
      name = args[++i];
    } else if (args[i].starts_with("--model=")) {
      name = args[i].substr(8);
    }
  }
  return name;
}

void add_model_option(po::options_description& options) {
  static const std::string fallback = "lenet5";
  options.add_options()("model", po::value<std::string>()->default_value(fallback),
                        "registered model (lenet models lists them)");
}

std::string default_weights(const nn::ModelEntry& entry) { return "models/" + entry.name + ".safetensors"; }

LoadedModel load_model(const nn::ModelEntry& entry, const std::string& path) {
  LoadedModel loaded{.entry = &entry};
  ag::Generator unused(0);  // every parameter is overwritten by the file's
  loaded.model = entry.make(unused);
  loaded.metadata = nn::load_weights(*loaded.model, path, entry.name);
  return loaded;
}

void require_positive(std::string_view option, double value) {
  if (!(value > 0))
    throw UsageError("--" + std::string(option) + " must be positive, got " + std::to_string(value));
}

int default_threads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
}

void require_thread_count(int threads) {
  if (threads < 1 || threads > 64) throw UsageError("--threads must be in [1, 64]");
}

std::string resolve_path(const po::variables_map& vm, const std::string& option, std::string_view hint) {
  const std::string& given = vm[option].as<std::string>();
  if (!vm[option].defaulted()) return given;
  std::error_code ignored;
  if (fs::exists(given, ignored)) return given;  // relative to the current directory, kept as such
  std::vector<std::string> tried{fs::absolute(given, ignored).lexically_normal().string()};
  for (const fs::path& directory : directories_from_binary()) {
    const fs::path candidate = (directory / given).lexically_normal();
    if (fs::exists(candidate, ignored)) return candidate.string();
    if (std::find(tried.begin(), tried.end(), candidate.string()) == tried.end()) tried.push_back(candidate.string());
  }
  std::string list;
  for (const std::string& path : tried) list += (list.empty() ? "" : ", ") + path;
  throw MissingPath("no " + given + " for --" + option + " here or near the lenet binary; tried " + list +
                    (hint.empty() ? "" : "; " + std::string(hint)));
}

}  // namespace cli
