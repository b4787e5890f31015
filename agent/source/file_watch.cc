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
  w.fd_.reset(inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (w.fd_.valid() &&
      inotify_add_watch(w.fd_.get(), dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MODIFY) < 0) {
    w.fd_.reset();  // polled instead
  }
  w.seen_ = w.last_ = w.stamp();
  return w;
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
  if (fd_.valid()) {
    alignas(struct inotify_event) char buf[4096];
    while (true) {
      const ssize_t n = ::read(fd_.get(), buf, sizeof buf);
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
  if (!(s == last_) && fd_.valid()) {
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
