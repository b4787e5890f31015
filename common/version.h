// The version and git commit stamped into both binaries at build time
// (cmake/Version.cmake): `--version` prints them and flowlb_build_info
// carries them as labels.
#pragma once

#include <string>

namespace flowlb {

const char* buildVersion();  // e.g. "0.1.0"
const char* buildCommit();   // e.g. "650a84f1c2d3", "650a84f1c2d3-dirty" or "unknown"

// "flowlb-agent 0.1.0 (commit 650a84f1c2d3)"
inline std::string versionLine(const std::string& binary) {
  return binary + " " + buildVersion() + " (commit " + buildCommit() + ")";
}

}  // namespace flowlb
