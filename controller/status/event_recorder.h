// Kubernetes Events on Services, deduplicated: a fact (a warning, an
// allocation, an announcer change, an agent's refusal) is posted when it
// appears, not at every reconcile while it lasts; when it comes back after
// going away, the Event already posted for it is counted up instead of a
// new one. The recorder owns that memory; an EventSink posts (the API in
// Kubernetes mode, the log in directory mode).
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

// The object an Event is about, from the recorder's key: "ns/name" is a
// Service; "BGPPeer/name" a BGPPeer and "BGPAdvertisement/name" a
// BGPAdvertisement (cluster-scoped: their Events live in namespace
// "default", as Nodes' do). Namespaces are lower case, so the two never
// collide.
struct InvolvedObject {
  std::string api_version;
  std::string kind;
  std::string ns;  // "" for a cluster-scoped object
  std::string name;
  std::string eventNamespace() const { return ns.empty() ? "default" : ns; }
};
InvolvedObject involvedObjectOf(const std::string& key);
inline std::string bgpPeerEventKey(const std::string& name) {
  return "BGPPeer/" + name;
}

struct EventPost {
  std::string service_key;  // the object's key (above)
  std::string uid;
  bool warning = true;
  std::string reason;
  std::string message;
  int count = 1;         // how often this fact has appeared
  std::string existing;  // the Event posted for it before (to count up), or ""
  std::string id;        // the recorder's identity of the fact
  bool operator==(const EventPost&) const = default;
};

class EventSink {
 public:
  virtual ~EventSink() = default;
  // Posts or counts up, possibly later on another thread; reports the
  // Event's name through EventRecorder::created when it made a new one.
  // False when it cannot post now (a follower): the fact stays untold, and
  // is posted when it is observed again.
  virtual bool post(const EventPost& e) = 0;
};

// Directory mode: Events become log lines (event=service_event).
class LogEventSink final : public EventSink {
 public:
  bool post(const EventPost& e) override;
};

class EventRecorder {
 public:
  explicit EventRecorder(EventSink* sink) : sink_(sink) {}

  // What `origin` ("reconcile", "announce", "agents") says holds for a
  // Service now; the facts that were not there before are posted.
  void observe(const std::string& service_key, const std::string& uid, const std::string& origin,
               const std::vector<ServiceEvent>& events);
  // Forgets the Services not in `live` (deleted, or not ours); other
  // kinds' objects are forgotten one by one.
  void retain(const std::set<std::string>& live);
  void forget(const std::string& key);
  // Forgets what one origin said about it (the others' facts stay).
  void forget(const std::string& key, const std::string& origin);
  void created(const EventPost& e, const std::string& name);
  size_t size() const;

 private:
  struct Record {
    std::string name;  // the Event posted, once known
    int count = 0;
  };
  EventSink* sink_;
  mutable std::mutex mu_;
  // service -> origin -> fact ids holding now
  std::map<std::string, std::map<std::string, std::set<std::string>>> active_;
  std::map<std::string, std::map<std::string, Record>> records_;  // service -> fact id
};

}  // namespace flowlb::controller
