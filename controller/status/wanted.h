// What flowlb wants a Service's status and annotations to say, decided in
// one place from the reconcile's outcome and what the agents report, so
// that one writer writes the whole of it and the condition shown is the
// one that holds (issue 13.5: two writes used to fight over it).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "controller/config/annotations.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

// What the distribution and the agents say about one Service (its VIPs'
// announcers, and which nodes failed to apply it). Each part is unknown
// until the distribution knows it (after its start-up grace, once an agent
// has acknowledged a state); an unknown part leaves the condition as it is.
struct ApplyFailure {
  std::string node;
  std::string
      code;  // the contract's ApplyErrorCode, e.g. "UNSUPPORTED"; "REJECTED": the whole state
  std::string message;
  bool operator==(const ApplyFailure&) const = default;
};

struct ServiceFeedback {
  bool announcers_known = false;
  // Per VIP of the Service, the node whose agent announces it ("" none).
  std::vector<std::pair<IpAddr, std::string>> announcers;
  bool programmed_known = false;     // some agent acknowledged a state with it
  int nodes = 0;                     // agents that run it
  std::vector<ApplyFailure> failed;  // nodes that could not apply it, by node
  // What the health checks and the Maglev fingerprint comparison show on
  // it while they hold (controller/health/): backends down or back, a
  // port failing open, nodes that built different tables.
  std::vector<ServiceEvent> health;
  bool operator==(const ServiceFeedback&) const = default;
};

// The Events these facts make: "Announced" (Normal) when a VIP has an
// announcer, one Warning per distinct agent refusal (its reason from the
// code, the agent's message; the nodes are in the condition).
std::vector<ServiceEvent> announceEvents(const ServiceFeedback& f);
std::vector<ServiceEvent> agentEvents(const ServiceFeedback& f);

struct WantedStatus {
  // Not ours any more (Reconciled::leaving): remove `ips` from the ingress
  // list, our conditions and the pool annotation; keep everything else.
  bool leaving = false;
  std::vector<IpAddr> ips;
  std::string pool;                   // the pool annotation; "" removes it
  std::vector<Condition> conditions;  // ours, by type; times are filled in on writing
  std::vector<std::string> keep;      // our condition types left as they are (not known yet)
  bool operator==(const WantedStatus&) const = default;
};

WantedStatus wantedFor(const ServiceOutcome& o, const ServiceFeedback* feedback);
WantedStatus wantedForLeaving(const LeavingService& l);

// Whether the Service's status already says it: the ingress addresses and
// our conditions (type, status, reason, message; times are not compared).
bool statusSays(const ServiceObject& s, const WantedStatus& w);
// Whether its pool annotation already says it.
bool annotationSays(const ServiceObject& s, const WantedStatus& w);

// The status to write: the ingress addresses, and the conditions with ours
// replaced (or removed, when leaving) and everyone else's kept. A condition
// keeps its lastTransitionTime while its status stays the same.
struct StatusUpdate {
  std::vector<IpAddr> ips;
  std::vector<std::string> hostnames;  // someone else's, kept when leaving
  std::vector<Condition> conditions;
};
StatusUpdate statusAfter(const ServiceObject& s, const WantedStatus& w,
                         const std::string& now_rfc3339);

}  // namespace flowlb::controller
