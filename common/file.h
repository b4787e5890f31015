// Reading a whole (small) file: certificates, tokens, configuration.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "common/status.h"

namespace flowlb {

inline Result<std::string> readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace flowlb
