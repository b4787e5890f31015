// Strings from outside (an agent's node name and error texts, an API
// server's messages) put into a log line: escaped, so a newline or a quote
// cannot forge or break a line, and truncated, so a peer cannot make the
// log as large as it likes (issue 17.3: 200 acks of 1 MiB wrote 207 MiB of
// log, and a node name with a newline forged a line).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>

namespace flowlb {

inline std::string logSafe(std::string_view s, size_t max_bytes = 256) {
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 16);
  const size_t n = std::min(s.size(), max_bytes);
  for (size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  if (s.size() > max_bytes) out += "...(+" + std::to_string(s.size() - max_bytes) + " bytes)";
  return out;
}

}  // namespace flowlb
