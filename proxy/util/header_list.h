#pragma once
#include <string>
#include <utility>
#include <vector>

namespace tether {
// Response or request header lines to write, in order: {name, value}.
using HeaderList = std::vector<std::pair<std::string, std::string>>;
}  // namespace tether
