// Posts the EventRecorder's Events to the API server through the writers'
// queue: a new fact creates an Event, the same fact again counts up the
// Event created for it (or creates one if it expired). Only the leader
// posts.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "controller/k8s/api_client.h"
#include "controller/k8s/write_queue.h"
#include "controller/status/event_recorder.h"

namespace flowlb::controller::k8s {

class EventTelemetry {
 public:
  virtual ~EventTelemetry() = default;
  virtual void eventPosted(std::string_view /*type*/, std::string_view /*reason*/) {}
};

class EventPoster final : public EventSink {
 public:
  EventPoster(ApiWriter* api, WriteQueue* queue, std::string reporting_instance,
              std::function<bool()> is_leader, Clock* clock = SystemClock::get(),
              EventTelemetry* telemetry = nullptr);
  void setRecorder(EventRecorder* recorder) { recorder_ = recorder; }
  bool post(const EventPost& e) override;

 private:
  Verdict send(const std::string& id);

  ApiWriter* api_;
  WriteQueue* queue_;
  std::string instance_;
  std::function<bool()> is_leader_;
  Clock* clock_;
  EventTelemetry* telemetry_;
  EventRecorder* recorder_ = nullptr;
  int kind_;
  std::mutex mu_;
  std::map<std::string, EventPost> posts_;  // by sequence number
  std::map<std::string, int> attempts_;
  uint64_t next_ = 0;
};

}  // namespace flowlb::controller::k8s
