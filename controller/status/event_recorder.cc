#include "controller/status/event_recorder.h"

#include <spdlog/spdlog.h>

#include <cctype>

#include "common/log_safe.h"

namespace flowlb::controller {

void EventRecorder::observe(const std::string& service_key, const std::string& uid,
                            const std::string& origin, const std::vector<ServiceEvent>& events) {
  std::vector<EventPost> posts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string>& active = active_[service_key][origin];
    std::set<std::string> now;
    for (const ServiceEvent& e : events) {
      const std::string id = origin + "|" + (e.warning ? "W|" : "N|") + e.reason + "|" + e.message;
      if (active.count(id)) {  // still holds: already told
        now.insert(id);
        continue;
      }
      const Record& r = records_[service_key][id];
      posts.push_back({service_key, uid, e.warning, e.reason, e.message, r.count + 1, r.name, id});
    }
    active = std::move(now);
  }
  for (const EventPost& p : posts) {
    if (!sink_->post(p)) continue;  // untold: posted when observed again
    std::lock_guard<std::mutex> lock(mu_);
    active_[service_key][origin].insert(p.id);
    ++records_[service_key][p.id].count;
  }
}

InvolvedObject involvedObjectOf(const std::string& key) {
  const size_t slash = key.find('/');
  const std::string first = key.substr(0, slash);
  const std::string rest = slash == std::string::npos ? "" : key.substr(slash + 1);
  if (first == "BGPPeer" || first == "BGPAdvertisement")
    return {"flowlb.io/v1alpha1", first, "", rest};
  return {"v1", "Service", first, rest};
}

namespace {
bool isService(const std::string& key) {
  return involvedObjectOf(key).kind == "Service";
}
}  // namespace

void EventRecorder::retain(const std::set<std::string>& live) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = active_.begin(); it != active_.end();) {
    it = live.count(it->first) || !isService(it->first) ? std::next(it) : active_.erase(it);
  }
  for (auto it = records_.begin(); it != records_.end();) {
    it = live.count(it->first) || !isService(it->first) ? std::next(it) : records_.erase(it);
  }
}

void EventRecorder::forget(const std::string& key, const std::string& origin) {
  std::lock_guard<std::mutex> lock(mu_);
  auto a = active_.find(key);
  if (a != active_.end()) a->second.erase(origin);
  auto r = records_.find(key);
  if (r == records_.end()) return;
  const std::string prefix = origin + "|";  // fact ids start with their origin
  for (auto it = r->second.begin(); it != r->second.end();) {
    it = it->first.compare(0, prefix.size(), prefix) == 0 ? r->second.erase(it) : std::next(it);
  }
}

void EventRecorder::forget(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.erase(key);
  records_.erase(key);
}

void EventRecorder::created(const EventPost& e, const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = records_.find(e.service_key);
  if (s == records_.end()) return;  // forgotten meanwhile
  auto r = s->second.find(e.id);
  if (r != s->second.end()) r->second.name = name;
}

size_t EventRecorder::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [k, m] : records_) n += m.size();
  return n;
}

bool LogEventSink::post(const EventPost& e) {
  const InvolvedObject o = involvedObjectOf(e.service_key);
  if (o.kind != "Service") {
    // Another kind: its own event name and the kind in lower case as the field.
    std::string field = o.kind;
    for (char& c : field) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (e.warning) {
      spdlog::warn("event=object_event type=Warning {}={} reason={} msg=\"{}\"", field, o.name,
                   e.reason, logSafe(e.message, 1024));
    } else {
      spdlog::info("event=object_event type=Normal {}={} reason={} msg=\"{}\"", field, o.name,
                   e.reason, logSafe(e.message, 1024));
    }
    return true;
  }
  if (e.warning) {
    spdlog::warn("event=service_event type=Warning service={} reason={} msg=\"{}\"", e.service_key,
                 e.reason, logSafe(e.message, 1024));
  } else {
    spdlog::info("event=service_event type=Normal service={} reason={} msg=\"{}\"", e.service_key,
                 e.reason, logSafe(e.message, 1024));
  }
  return true;
}

}  // namespace flowlb::controller
