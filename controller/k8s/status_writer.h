// Writes what flowlb decided back to the API server: each Service's status
// (ingress addresses and our conditions) and pool annotation, and each
// IPPool's status. It owns the queue of wishes and the memory of its own
// writes (the answer of a write, used until the watch brings the same
// object back: read-your-writes), and decides every retry from one verdict
// (Success, Retry, FailNoRetry). It talks to the API only through
// ApiWriter, and takes its clock and leadership as arguments, so tests
// drive it with fakes.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/clock.h"
#include "controller/decode/decode.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/write_queue.h"
#include "controller/loop/reconcile_loop.h"

namespace flowlb::controller::k8s {

class WriteTelemetry {
 public:
  virtual ~WriteTelemetry() = default;
  // result: ok | conflict | failed
  virtual void statusWrite(std::string_view /*result*/) {}
};

struct StatusWriterOptions {
  ReconcilerConfig reconciler;  // which Services are ours
};

class StatusWriter final : public StatusSink {
 public:
  using ReadService = std::function<std::optional<ServiceObject>(const std::string& key)>;
  using ReadPool = std::function<std::optional<PoolObject>(const std::string& name)>;
  StatusWriter(StatusWriterOptions options, ApiWriter* api, WriteQueue* queue,
               ReadService read_service, ReadPool read_pool, std::function<bool()> is_leader,
               Clock* clock = SystemClock::get(), WriteTelemetry* telemetry = nullptr);

  // StatusSink
  void overlay(ServicePtr* s) const override;
  bool pending(const std::string& key) const override;
  void want(const std::map<std::string, WantedStatus>& wanted, bool complete) override;
  void reconciled(const Reconciled& r) override;

  // A re-list: the server's list is what holds now. Our remembered writes
  // are dropped, so none can win over it (issue 17.11: after an etcd
  // restore, resourceVersions went backwards and a remembered write looked
  // newer than the server's state).
  void forgetWrites();
  // Leadership lost: nothing queued is written.
  void dropQueued();

  // The newest view of a Service: the cache, or our last write's answer if
  // that is newer.
  std::optional<ServiceObject> current(const std::string& key) const;
  std::optional<WantedStatus> wanted(const std::string& key) const;

 private:
  Verdict writeStatus(const std::string& key);
  Verdict writeAnnotation(const std::string& key);
  Verdict writePool(const std::string& name);
  // The verdict for an answer that is not 2xx (after a 409, `key` is re-read).
  Verdict failed(const char* what, const std::string& key, const ApiResponse& r);
  void remember(const std::string& body);
  void overlayWritten(ServiceObject* s) const;

  StatusWriterOptions opt_;
  ApiWriter* api_;
  WriteQueue* queue_;
  ReadService read_service_;
  ReadPool read_pool_;
  std::function<bool()> is_leader_;
  Clock* clock_;
  WriteTelemetry* telemetry_;
  int kind_status_, kind_annotation_, kind_pool_;

  mutable std::mutex mu_;
  std::map<std::string, WantedStatus> wanted_;    // per Service key
  std::map<std::string, ServiceObject> written_;  // our writes' answers
  std::map<std::string, PoolUsage> pool_wanted_;
  std::map<std::string, PoolUsage> pool_written_;
};

}  // namespace flowlb::controller::k8s
