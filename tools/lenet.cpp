// The `lenet` command: its subcommands (one per file in tools/) and the dispatch that turns every
// error into one line and an exit status. main.cpp calls run(); a program that registers a model
// of its own can call it too and get every verb for that model.
#include <array>
#include <iostream>
#include <new>
#include <string>
#include <vector>

#include "autograd/subnormals.hpp"
#include "models/registry.hpp"
#include "tools/cli.hpp"

namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(const std::vector<std::string>& args);
};

constexpr std::array commands{
    Command{"train", "train a model on MNIST and write its weights", cli::train},
    Command{"eval", "test accuracy, per-class accuracy and confusion matrix of saved weights", cli::eval},
    Command{"predict", "classify digit images (PNG or PGM)", cli::predict},
    Command{"graph", "draw a model's computation graph (DOT, SVG or PNG)", cli::graph},
    Command{"export", "write a model with its weights as an ONNX file", cli::export_model},
    Command{"serve", "serve the draw-a-digit web page and its JSON API", cli::serve},
    Command{"bench", "measure training and inference speed", cli::bench},
    Command{"models", "list the registered models", cli::models},
    Command{"gradcheck", "check a model's gradients against finite differences", cli::gradcheck},
};

void usage(std::ostream& out) {
  out << "usage: lenet COMMAND [OPTIONS]    (lenet COMMAND --help for its options)\n\ncommands:\n";
  for (const auto& c : commands) out << "  " << c.name << std::string(10 - c.name.size(), ' ') << c.summary << '\n';
}

}  // namespace

int cli::run(int argc, char** argv) {
  if (argc < 2) {
    usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(std::cout);
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  // Before any thread starts, so that all of them (training shards, server workers) inherit it.
  const ag::FlushSubnormalsGuard flush_subnormals;
  for (const auto& command : commands) {
    if (command.name != name) continue;
    try {
      return command.run(args);
    } catch (const nn::UnknownModel& e) {
      std::cerr << "lenet " << name << ": " << e.what() << '\n';
      return 2;
    } catch (const cli::UsageError& e) {
      std::cerr << "lenet " << name << ": " << e.what() << " (see lenet " << name << " --help)\n";
      return 2;
    } catch (const std::bad_alloc&) {
      std::cerr << "lenet " << name << ": out of memory (a smaller batch size or image may fit)\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "lenet " << name << ": " << e.what() << '\n';
      return 1;
    }
  }
  std::cerr << "lenet: unknown command '" << name << "' (see lenet --help)\n";
  return 2;
}
