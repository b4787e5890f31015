#include "controller/status/wanted.h"

#include <algorithm>

namespace flowlb::controller {
namespace {

std::string joined(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

const Condition* find(const std::vector<Condition>& all, const std::string& type) {
  for (const Condition& c : all) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

bool same(const Condition& a, const Condition& b) {
  return a.type == b.type && a.status == b.status && a.reason == b.reason && a.message == b.message;
}

bool kept(const WantedStatus& w, const std::string& type) {
  return std::find(w.keep.begin(), w.keep.end(), type) != w.keep.end();
}

// At most this many nodes are named in a condition message.
constexpr size_t kNamedNodes = 5;

}  // namespace

WantedStatus wantedFor(const ServiceOutcome& o, const ServiceFeedback* f) {
  WantedStatus w;
  w.ips = o.ips;
  w.pool = o.satisfied ? o.pool : "";
  w.conditions.push_back(
      {kConditionAllocated, o.satisfied ? "True" : "False", o.reason, o.message, "", 0});
  if (!f || !f->programmed_known) w.keep.push_back(kConditionProgrammed);
  if (!f || !f->announcers_known) w.keep.push_back(kConditionAnnounced);
  if (!f) return w;
  if (f->programmed_known) {
    if (f->failed.empty()) {
      // No count when all is well: it would rewrite every Service's status
      // each time an agent comes or goes.
      w.conditions.push_back({kConditionProgrammed, "True", "Programmed",
                              "applied by every agent that runs it", "", 0});
    } else {
      std::vector<std::string> why;
      for (size_t i = 0; i < f->failed.size() && i < kNamedNodes; ++i) {
        why.push_back(f->failed[i].node + ": " + f->failed[i].code + ": " + f->failed[i].message);
      }
      if (f->failed.size() > kNamedNodes) {
        why.push_back("and " + std::to_string(f->failed.size() - kNamedNodes) + " more");
      }
      const int applied = std::max(0, f->nodes - static_cast<int>(f->failed.size()));
      w.conditions.push_back({kConditionProgrammed, "False", "NotProgrammed",
                              "applied on " + std::to_string(applied) + " of " +
                                  std::to_string(f->nodes) + " nodes; not on " + joined(why, "; "),
                              "", 0});
    }
  }
  if (f->announcers_known && !f->announcers.empty()) {
    std::vector<std::string> by, none;
    for (const auto& [vip, node] : f->announcers) {
      if (node.empty()) {
        none.push_back(vip.toString());
      } else {
        by.push_back(vip.toString() + " announced by node " + node);
      }
    }
    if (none.empty()) {
      w.conditions.push_back({kConditionAnnounced, "True", "Announced", joined(by, "; "), "", 0});
    } else {
      w.conditions.push_back({kConditionAnnounced, "False", "NoAnnouncer",
                              joined(none, ", ") +
                                  " announced by no node (no connected, "
                                  "healthy agent among its candidates)" +
                                  (by.empty() ? "" : "; " + joined(by, "; ")),
                              "", 0});
    }
  }
  return w;
}

std::vector<ServiceEvent> announceEvents(const ServiceFeedback& f) {
  std::vector<ServiceEvent> out;
  if (!f.announcers_known) return out;
  for (const auto& [vip, node] : f.announcers) {
    if (!node.empty())
      out.push_back({false, "Announced", vip.toString() + " announced by node " + node});
  }
  return out;
}

std::vector<ServiceEvent> agentEvents(const ServiceFeedback& f) {
  std::vector<ServiceEvent> out;
  for (const ApplyFailure& a : f.failed) {
    std::string reason = "NotApplied";
    if (a.code == "INVALID_ARGUMENT") reason = "AgentRefusedInvalid";
    if (a.code == "UNSUPPORTED") reason = "AgentRefusedUnsupported";
    if (a.code == "RESOURCE_EXHAUSTED") reason = "AgentOutOfCapacity";
    if (a.code == "CONFLICT") reason = "AgentConflict";
    if (a.code == "REJECTED") reason = "AgentRejectedState";
    const ServiceEvent e{true, reason, a.message};
    if (std::find_if(out.begin(), out.end(), [&](const ServiceEvent& x) {
          return x.reason == e.reason && x.message == e.message;
        }) == out.end()) {
      out.push_back(e);
    }
  }
  return out;
}

WantedStatus wantedForLeaving(const LeavingService& l) {
  WantedStatus w;
  w.leaving = true;
  w.ips = l.ips;
  return w;
}

bool statusSays(const ServiceObject& s, const WantedStatus& w) {
  if (w.leaving) {
    for (const IpAddr& a : w.ips) {
      if (std::find(s.status.ips.begin(), s.status.ips.end(), a) != s.status.ips.end()) {
        return false;
      }
    }
    for (const Condition& c : s.status.conditions) {
      if (isControllerCondition(c.type)) return false;
    }
    return true;
  }
  if (s.status.ips != w.ips) return false;
  for (const Condition& want : w.conditions) {
    const Condition* have = find(s.status.conditions, want.type);
    if (!have || !same(*have, want)) return false;
  }
  // None of ours that we no longer want.
  for (const Condition& c : s.status.conditions) {
    if (isControllerCondition(c.type) && !find(w.conditions, c.type) && !kept(w, c.type)) {
      return false;
    }
  }
  return true;
}

bool annotationSays(const ServiceObject& s, const WantedStatus& w) {
  auto it = s.meta.annotations.find(kAnnotationAllocatedFrom);
  const std::string have = it == s.meta.annotations.end() ? "" : it->second;
  return have == (w.leaving ? "" : w.pool);
}

StatusUpdate statusAfter(const ServiceObject& s, const WantedStatus& w,
                         const std::string& now_rfc3339) {
  StatusUpdate u;
  if (w.leaving) {
    for (const IpAddr& a : s.status.ips) {
      if (std::find(w.ips.begin(), w.ips.end(), a) == w.ips.end()) u.ips.push_back(a);
    }
    u.hostnames = s.status.hostnames;
  } else {
    u.ips = w.ips;
  }
  for (const Condition& c : s.status.conditions) {
    // Everyone else's, and ours that are not known yet.
    if (!isControllerCondition(c.type) || (!w.leaving && kept(w, c.type))) {
      u.conditions.push_back(c);
    }
  }
  if (w.leaving) return u;
  for (Condition c : w.conditions) {
    const Condition* before = find(s.status.conditions, c.type);
    c.last_transition = before && before->status == c.status && !before->last_transition.empty()
                            ? before->last_transition
                            : now_rfc3339;
    c.observed_generation = s.meta.generation;
    u.conditions.push_back(std::move(c));
  }
  return u;
}

}  // namespace flowlb::controller
