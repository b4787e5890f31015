// The directory source as the reconcile loop sees it: the objects of a
// DirSource (re-read on change, thread-safe), the status file as the
// place statuses go, and an inotify watcher that says when files changed.
// With these, directory mode runs the same loop as Kubernetes mode:
// incremental reconcile, deduplicated Events (logged), metrics.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"
#include "controller/loop/reconcile_loop.h"
#include "controller/source/dir_source.h"

namespace flowlb::controller {

class DirObjects final : public ObjectSource {
 public:
  explicit DirObjects(std::string dir) : source_(std::move(dir)) {}
  // Re-reads the directory; what changed since the last read. Problems
  // are logged when they appear (event=object_rejected) and counted by
  // `on_problem`.
  Result<SourceChanges> refresh(const std::function<void(const std::string&)>& on_problem = {});

  bool synced() const override;
  std::vector<ServicePtr> services() const override;
  std::optional<ServiceObject> service(const std::string& key) const override;
  std::vector<SlicePtr> slices() const override;
  std::vector<EndpointSliceObject> slicesOf(const std::string& service_key) const override;
  std::vector<NodeObject> nodes() const override;
  std::vector<IpPool> pools() const override;
  std::vector<BgpPeerSpec> bgpPeers() const override;
  std::vector<BgpAdvertisementSpec> bgpAdvertisements() const override;
  std::optional<SecretObject> secret(const std::string& name) const override;

 private:
  mutable std::mutex mu_;
  DirSource source_;  // guarded by mu_
  bool read_ = false;
  std::set<std::string> reported_;  // problems already logged
};

// Statuses in directory mode: the status file. Its addresses stand in for
// a Service's status.loadBalancer.ingress when the YAML has none.
class StatusFileSink final : public StatusSink {
 public:
  explicit StatusFileSink(StatusFile file) : file_(std::move(file)) {}
  void overlay(ServicePtr* s) const override;
  bool pending(const std::string&) const override { return false; }
  void want(const std::map<std::string, WantedStatus>&, bool) override {}
  void reconciled(const Reconciled& r) override;

 private:
  mutable std::mutex mu_;
  StatusFile file_;
};

// Calls `changed` when a file in `dir` was written (closed), moved in or
// out, or deleted. RAII over the inotify descriptor and its thread.
class DirWatcher {
 public:
  static Result<std::unique_ptr<DirWatcher>> start(const std::string& dir,
                                                   std::function<void()> changed);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

 private:
  DirWatcher() = default;
  void run();
  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd that wakes the thread to stop
  std::function<void()> changed_;
  std::thread thread_;
};

}  // namespace flowlb::controller
