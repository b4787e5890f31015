// Watches the standalone configuration file and says when a new version is
// complete: written and closed (IN_CLOSE_WRITE), or renamed into place
// (IN_MOVED_TO), and then unchanged (size and modification time) for a
// settle period. A file rewritten in place is therefore never read
// half-written (issue 17.8). Watching the directory catches editors that
// replace the file. Without inotify it falls back to comparing size and
// modification time on every check, twice a settle period apart.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace flowlb::agent {

class FileWatch {
 public:
  using Clock = std::chrono::steady_clock;

  static Result<FileWatch> open(const std::string& path,
                                std::chrono::milliseconds settle = std::chrono::milliseconds(100));
  FileWatch(FileWatch&& other) noexcept = default;
  FileWatch& operator=(FileWatch&& other) noexcept = default;

  // A descriptor to wait on (readable when something happened), or -1.
  int fd() const { return fd_.get(); }
  // Drains events; true once a changed version has been stable for the
  // settle period (then false until the next change). Call it whenever fd()
  // is readable, and at least every settle period while pending().
  bool ready(Clock::time_point now);
  bool pending() const { return pending_; }
  // Forces a reload on the next ready() (SIGHUP), still after settling.
  void touch(Clock::time_point now);

 private:
  FileWatch() = default;
  struct Stamp {
    off_t size = -1;
    int64_t mtime_ns = -1;
    bool operator==(const Stamp&) const = default;
  };
  Stamp stamp() const;

  std::string path_;
  std::string name_;  // the file's name in its directory
  std::chrono::milliseconds settle_{100};
  UniqueFd fd_;  // inotify; invalid: polled instead
  bool pending_ = false;
  Stamp seen_;  // what was last reported
  Stamp last_;  // at the last change or check
  Clock::time_point changed_at_{};
};

}  // namespace flowlb::agent
