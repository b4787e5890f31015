#include "controller/source/dir_objects.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log_safe.h"

namespace flowlb::controller {

Result<SourceChanges> DirObjects::refresh(
    const std::function<void(const std::string&)>& on_problem) {
  std::lock_guard<std::mutex> lock(mu_);
  const SourceSnapshot before = source_.snapshot();
  if (Status st = source_.refresh(); !st) return st;
  const SourceSnapshot& after = source_.snapshot();
  std::set<std::string> now(after.problems.begin(), after.problems.end());
  for (const std::string& p : after.problems) {
    if (reported_.count(p)) continue;
    spdlog::warn("event=object_rejected msg=\"{}\"", logSafe(p, 1024));
    if (on_problem) on_problem(p);
  }
  for (const std::string& p : reported_) {
    if (!now.count(p)) spdlog::info("event=object_problem_resolved msg=\"{}\"", logSafe(p, 1024));
  }
  reported_ = std::move(now);
  SourceChanges c = diffSnapshots(before, after);
  if (!read_) c.others = true;  // the first read: everything
  read_ = true;
  return c;
}

bool DirObjects::synced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return read_;
}

std::vector<ServicePtr> DirObjects::services() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shareAll(source_.snapshot().services);
}

std::optional<ServiceObject> DirObjects::service(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const ServiceObject& s : source_.snapshot().services) {
    if (s.meta.key() == key) return s;
  }
  return std::nullopt;
}

std::vector<SlicePtr> DirObjects::slices() const {
  std::lock_guard<std::mutex> lock(mu_);
  return shareAll(source_.snapshot().slices);
}

std::vector<EndpointSliceObject> DirObjects::slicesOf(const std::string& service_key) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EndpointSliceObject> out;
  for (const EndpointSliceObject& e : source_.snapshot().slices) {
    if (e.serviceKey() == service_key) out.push_back(e);
  }
  return out;
}

std::vector<NodeObject> DirObjects::nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return source_.snapshot().nodes;
}

std::vector<IpPool> DirObjects::pools() const {
  std::lock_guard<std::mutex> lock(mu_);
  return source_.snapshot().pools;
}

std::vector<BgpPeerSpec> DirObjects::bgpPeers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return source_.snapshot().bgp_peers;
}

std::vector<BgpAdvertisementSpec> DirObjects::bgpAdvertisements() const {
  std::lock_guard<std::mutex> lock(mu_);
  return source_.snapshot().bgp_advertisements;
}

std::optional<SecretObject> DirObjects::secret(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const SecretObject& s : source_.snapshot().secrets) {
    if (s.meta.name == name) return s;
  }
  return std::nullopt;
}

void StatusFileSink::overlay(ServicePtr* s) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!file_.fills(**s)) return;  // the shared object stays
  ServiceObject o = **s;
  file_.overlay(&o);
  *s = std::make_shared<const ServiceObject>(std::move(o));
}

void StatusFileSink::reconciled(const Reconciled& r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status st = file_.save(r); !st) {
    spdlog::error("event=status_write_failed msg=\"{}\"", st.message());
  }
}

Result<std::unique_ptr<DirWatcher>> DirWatcher::start(const std::string& dir,
                                                      std::function<void()> changed) {
  std::unique_ptr<DirWatcher> w(new DirWatcher());
  w->changed_ = std::move(changed);
  w->inotify_fd_ = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  w->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (w->inotify_fd_ < 0 || w->stop_fd_ < 0 ||
      inotify_add_watch(w->inotify_fd_, dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0) {
    return Status::error("cannot watch " + dir + ": " + std::strerror(errno));
  }
  w->thread_ = std::thread([p = w.get()] { p->run(); });
  return w;
}

DirWatcher::~DirWatcher() {
  if (stop_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = write(stop_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void DirWatcher::run() {
  while (true) {
    struct pollfd p[2] = {{inotify_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
    if (p[1].revents) return;
    if (!(p[0].revents & POLLIN)) continue;
    char buf[4096];
    while (read(inotify_fd_, buf, sizeof buf) > 0) {
    }
    changed_();
  }
}

}  // namespace flowlb::controller
