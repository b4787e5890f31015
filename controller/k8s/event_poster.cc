#include "controller/k8s/event_poster.h"

#include <cpprest/json.h>
#include <spdlog/spdlog.h>

#include <cstdio>

#include "common/log_safe.h"
#include "controller/k8s/decode.h"
#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s {

EventPoster::EventPoster(ApiWriter* api, WriteQueue* queue, std::string reporting_instance,
                         std::function<bool()> is_leader, Clock* clock, EventTelemetry* telemetry)
    : api_(api),
      queue_(queue),
      instance_(std::move(reporting_instance)),
      is_leader_(std::move(is_leader)),
      clock_(clock),
      telemetry_(telemetry) {
  kind_ = queue_->addKind("event", 1, [this](const std::string& id) { return send(id); });
}

bool EventPoster::post(const EventPost& e) {
  if (!is_leader_()) return false;  // a follower posts nothing
  char id[24];
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::snprintf(id, sizeof id, "%020llu", static_cast<unsigned long long>(next_++));
    posts_[id] = e;
  }
  queue_->add(kind_, id);
  return true;
}

Verdict EventPoster::send(const std::string& id) {
  EventPost e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = posts_.find(id);
    if (it == posts_.end()) return Verdict::success();
    e = it->second;
  }
  auto done = [&](Verdict v) {
    std::lock_guard<std::mutex> lock(mu_);
    // Events are best effort: a few tries, then it is dropped.
    if (v.kind == Verdict::Kind::kRetry && ++attempts_[id] < 4) return v;
    posts_.erase(id);
    attempts_.erase(id);
    return v.kind == Verdict::Kind::kRetry ? Verdict::failNoRetry() : v;
  };
  if (!is_leader_() || api_->stopping()) return done(Verdict::failNoRetry());
  const std::string ns = involvedObjectOf(e.service_key).eventNamespace();
  const std::string now = rfc3339(std::chrono::system_clock::to_time_t(clock_->wallNow()));
  if (!e.existing.empty()) {  // the same fact again: count it on the same Event
    const ApiResponse r =
        api_->request("PATCH", eventPath(ns, e.existing), eventCountPatch(e.count, now),
                      "application/merge-patch+json");
    if (r.ok()) {
      if (telemetry_) telemetry_->eventPosted(e.warning ? "Warning" : "Normal", e.reason);
      return done(Verdict::success());
    }
    if (r.retryable()) return done(Verdict::retry());
    // Expired (Events live an hour by default): create a new one.
  }
  const ApiResponse r = api_->request("POST", eventsPath(ns), eventBody(e, instance_, now));
  if (!r.ok()) {
    spdlog::warn("event=event_post_failed service={} reason={} code={} msg=\"{}\"", e.service_key,
                 e.reason, r.code, logSafe(r.error));
    return done(r.retryable() ? Verdict::retry() : Verdict::failNoRetry());
  }
  if (telemetry_) telemetry_->eventPosted(e.warning ? "Warning" : "Normal", e.reason);
  try {
    const std::string created =
        web::json::value::parse(r.body).at("metadata").at("name").as_string();
    if (recorder_) recorder_->created(e, created);
  } catch (const std::exception&) {
  }
  return done(Verdict::success());
}

}  // namespace flowlb::controller::k8s
