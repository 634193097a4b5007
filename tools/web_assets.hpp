// The page's files (tools/web/), embedded into the binary at build time by tools/web/embed.py, so
// the server answers from memory and never opens a path taken from a request.
#pragma once

#include <span>
#include <string_view>

namespace web {

struct Asset {
  std::string_view path;          // URL path: "/index.html", "/app.js", ...
  std::string_view content_type;  // "text/html; charset=utf-8", ...
  std::string_view bytes;
};

/// Every embedded file, in the order they were given to the build.
std::span<const Asset> embedded_assets();

}  // namespace web
