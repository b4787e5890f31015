// Command-line helpers shared by both binaries (CLI11). Flags are checked
// while parsing, so a bad value ends in a usage error naming the flag and
// exit code 2, never in an exception thrown later from a std::sto* call.
#pragma once

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "common/http_server.h"
#include "common/version.h"

namespace flowlb {

// host:port or [v6]:port with a port in 0..65535.
inline CLI::Validator hostPortValidator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        Status st = parseHostPort(s, nullptr, nullptr);
        return st ? std::string() : st.message();
      },
      "HOST:PORT");
}

// A CPU number (0..9999), for list options such as --cpus 0,2.
inline CLI::Validator cpuValidator() {
  return CLI::Validator(
      [](std::string& c) -> std::string {
        const bool ok =
            !c.empty() && c.size() <= 4 && c.find_first_not_of("0123456789") == std::string::npos;
        return ok ? "" : "'" + c + "' is not a CPU number";
      },
      "CPU");
}

// An unsigned number in 1..max, decimal or 0x hex (strtoull base 0).
inline CLI::Validator numberValidator(unsigned long long max) {
  return CLI::Validator(
      [max](std::string& v) -> std::string {
        char* end = nullptr;
        errno = 0;
        const unsigned long long x = std::strtoull(v.c_str(), &end, 0);
        const bool ok =
            !v.empty() && v[0] != '-' && errno == 0 && *end == '\0' && x > 0 && x <= max;
        return ok ? "" : "'" + v + "' is not a number in 1.." + std::to_string(max);
      },
      "NUMBER");
}

// Adds --version (prints versionLine(binary) and exits 0).
inline void addVersionFlag(CLI::App& app, const std::string& binary) {
  app.add_flag_callback(
      "--version",
      [binary] {
        std::printf("%s\n", versionLine(binary).c_str());
        throw CLI::Success();
      },
      "Print the version and git commit, and exit");
}

// Parses argv. Returns -1 to go on, or the exit code: 0 for --help and
// --version, 2 for any usage error, including an exception thrown by a
// validator or callback (the message names what was wrong).
inline int parseCommandLine(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\nRun with --help for more information.\n", e.what());
    return 2;
  }
  return -1;
}

}  // namespace flowlb
