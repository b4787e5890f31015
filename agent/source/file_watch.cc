#include "agent/source/file_watch.h"

#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace flowlb::agent {

Result<FileWatch> FileWatch::open(const std::string& path, std::chrono::milliseconds settle) {
  FileWatch w;
  w.path_ = path;
  w.settle_ = settle;
  const std::filesystem::path p(path);
  w.name_ = p.filename().string();
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  w.fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w.fd_ >= 0 && inotify_add_watch(w.fd_, dir.c_str(),
                                      IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY) < 0) {
    ::close(w.fd_);
    w.fd_ = -1;  // polled instead
  }
  w.seen_ = w.last_ = w.stamp();
  return w;
}

FileWatch::FileWatch(FileWatch&& o) noexcept {
  *this = std::move(o);
}

FileWatch& FileWatch::operator=(FileWatch&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    name_ = std::move(o.name_);
    settle_ = o.settle_;
    fd_ = o.fd_;
    o.fd_ = -1;
    pending_ = o.pending_;
    seen_ = o.seen_;
    last_ = o.last_;
    changed_at_ = o.changed_at_;
  }
  return *this;
}

FileWatch::~FileWatch() {
  if (fd_ >= 0) ::close(fd_);
}

FileWatch::Stamp FileWatch::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return {};
  return {st.st_size, static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

void FileWatch::touch(Clock::time_point now) {
  pending_ = true;
  changed_at_ = now;
  last_ = stamp();
  seen_ = {};  // report even if unchanged
}

bool FileWatch::ready(Clock::time_point now) {
  if (fd_ >= 0) {
    alignas(struct inotify_event) char buf[4096];
    while (true) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        const auto* e = reinterpret_cast<const struct inotify_event*>(buf + off);
        off += static_cast<ssize_t>(sizeof(struct inotify_event) + e->len);
        if (e->len == 0 || name_ != e->name) continue;
        // A write in progress restarts the clock; completion starts it.
        changed_at_ = now;
        if (e->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) pending_ = true;
      }
    }
    if (pending_ && changed_at_ == now) last_ = stamp();
  } else {
    const Stamp s = stamp();
    if (!(s == last_)) {
      pending_ = true;
      changed_at_ = now;
      last_ = s;
    }
  }
  if (!pending_ || now - changed_at_ < settle_) return false;
  // Settled: still the same size and time as when it last changed?
  const Stamp s = stamp();
  if (!(s == last_) && fd_ >= 0) {
    last_ = s;
    changed_at_ = now;  // changed without an event we saw: settle again
    return false;
  }
  pending_ = false;
  if (s == seen_) return false;  // rewritten with the same content stamp: nothing new
  seen_ = s;
  return true;
}

}  // namespace flowlb::agent
