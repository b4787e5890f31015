// Wakes a thread that waits in poll(): an eventfd that becomes readable when
// anyone calls wake() (from any thread, or a signal handler: wake() is one
// write(2), async-signal-safe) and stays so until the waiter drains it.
// Wakeups between two drains coalesce into one.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "common/status.h"
#include "common/unique_fd.h"

namespace flowlb {

class Waker {
 public:
  static Result<Waker> create() {
    Waker w;
    w.fd_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!w.fd_.valid()) return Status::error(std::string("eventfd: ") + std::strerror(errno));
    return w;
  }

  int fd() const { return fd_.get(); }
  void wake() const {
    const uint64_t one = 1;
    (void)!::write(fd_.get(), &one, sizeof one);
  }
  // Consumes the pending wakeups; true if there were any.
  bool drain() const {
    uint64_t n = 0;
    return ::read(fd_.get(), &n, sizeof n) == static_cast<ssize_t>(sizeof n) && n > 0;
  }

 private:
  Waker() = default;
  UniqueFd fd_;
};

}  // namespace flowlb
