#include "controller/reconciler/reconciler.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "common/hash.h"

namespace flowlb::controller {
namespace {

const char* protoName(uint8_t p) {
  return p == 17 ? "udp" : p == 132 ? "sctp" : "tcp";
}

LbService toAllocatorView(const ServiceObject& s, const ServiceSettings& settings) {
  LbService l;
  l.ns = s.meta.ns;
  l.name = s.meta.name;
  l.created = s.meta.created;
  l.labels = s.meta.labels;
  l.families = s.spec.ip_families.empty() ? std::vector<Family>{Family::kV4} : s.spec.ip_families;
  if (s.spec.ip_family_policy == "SingleStack") l.families.resize(1);
  l.require_all_families = s.spec.ip_family_policy == "RequireDualStack";
  l.pool = settings.pool;
  l.requested = settings.ips;
  l.sharing_key = settings.sharing_key;
  for (const ServicePortSpec& p : s.spec.ports) l.ports.push_back({p.proto, p.port});
  l.current = s.status.ips;
  return l;
}

}  // namespace

bool servedByUs(const ServiceObject& s, const ReconcilerConfig& config) {
  if (s.spec.type != "LoadBalancer") return false;
  if (s.spec.load_balancer_class) return *s.spec.load_balancer_class == config.load_balancer_class;
  return config.default_class;
}

bool carriesOurMarks(const ServiceObject& s) {
  if (s.meta.annotations.count(kAnnotationAllocatedFrom)) return true;
  for (const Condition& c : s.status.conditions) {
    if (isControllerCondition(c.type)) return true;
  }
  return false;
}

bool sameInputs(const ServiceObject& a, const ServiceObject& b) {
  if (!(a.spec == b.spec) || a.meta.labels != b.meta.labels || a.meta.created != b.meta.created) {
    return false;
  }
  // Annotations, but for those we write ourselves.
  auto ia = a.meta.annotations.begin(), ib = b.meta.annotations.begin();
  const auto ea = a.meta.annotations.end(), eb = b.meta.annotations.end();
  while (true) {
    while (ia != ea && isControllerAnnotation(ia->first)) ++ia;
    while (ib != eb && isControllerAnnotation(ib->first)) ++ib;
    if (ia == ea || ib == eb) return ia == ea && ib == eb;
    if (*ia != *ib) return false;
    ++ia;
    ++ib;
  }
}

ReconcilePlan IncrementalReconciler::plan(const std::vector<ServiceChange>& services,
                                          const std::vector<std::string>& slice_owners,
                                          bool others) const {
  ReconcilePlan p;
  if (others) {
    p.full = true;
    return p;
  }
  for (const ServiceChange& c : services) {
    auto it = entries_.find(c.key);
    const Entry* before = it == entries_.end() ? nullptr : &it->second;
    // Leaving us, and changed: cleared (release the address), deleted, or back.
    if (leaving_.count(c.key)) return {true, {}};
    if (!c.now) {
      if (before) return {true, {}};  // a served Service went away: release its addresses
      continue;
    }
    if (!before) {
      if (servedByUs(*c.now, config_)) return {true, {}};  // new, or became ours
      continue;                                            // not ours before, not ours now
    }
    if (!sameInputs(*before->svc, *c.now)) return {true, {}};
    // The status must say what we allocated (our own write coming back);
    // anything else means someone else changed it.
    if (!c.status_write_pending && c.now->status.ips != out_.services[before->outcome].ips) {
      return {true, {}};
    }
  }
  std::set<std::string> touched;
  for (const std::string& key : slice_owners) {
    if (entries_.count(key)) touched.insert(key);
  }
  p.endpoints_of.assign(touched.begin(), touched.end());
  return p;
}

namespace {

// The desired entries of one served Service (one per VIP and port) and the
// problems found while building them.
std::vector<DesiredService> buildDesired(
    const ServiceObject& s, const ServiceSettings& st, const std::vector<IpAddr>& ips,
    const std::vector<const EndpointSliceObject*>& slices,
    const std::vector<std::string>& ready_nodes,
    const std::shared_ptr<const std::vector<std::string>>& all_ready,
    std::vector<ServiceEvent>* events) {
  std::vector<DesiredService> out;
  const std::string key = s.meta.key();
  for (const IpAddr& vip : ips) {
    for (const ServicePortSpec& port : s.spec.ports) {
      DesiredService d;
      d.key =
          key + "/" +
          (port.name.empty() ? std::string(protoName(port.proto)) + "-" + std::to_string(port.port)
                             : port.name) +
          "/" + (vip.isV4() ? "ipv4" : "ipv6");
      d.vip = vip;
      d.port = port.port;
      d.proto = port.proto;
      d.mode = st.mode;
      d.client_ip_affinity = s.spec.session_affinity_client_ip;
      d.affinity_timeout_s = s.spec.session_affinity_timeout_s;
      d.idle_timeout_s = st.idle_timeout_s;
      d.drain_timeout_s = st.drain_timeout_s;
      d.external_traffic_local = s.spec.external_traffic_local;
      d.proxy_protocol_v2 = st.proxy_protocol_v2;
      d.health = st.health;
      d.source_ranges = s.spec.source_ranges;
      std::set<std::pair<IpAddr, uint16_t>> seen;
      for (const EndpointSliceObject* slice : slices) {
        uint16_t target = 0;
        for (const ServicePortSpec& sp : slice->ports) {
          if (sp.name == port.name && sp.proto == port.proto) target = sp.port;
        }
        if (target == 0) continue;
        for (const Endpoint& e : slice->endpoints) {
          // ready: new flows; terminating but serving: drain (keep its
          // flows, no new ones); anything else: no traffic at all.
          BackendState state;
          if (e.ready && !e.terminating) {
            state = BackendState::kActive;
          } else if (e.serving && e.terminating) {
            state = BackendState::kDraining;
          } else {
            continue;
          }
          for (const IpAddr& addr : e.addresses) {
            if (addr.isV4() != vip.isV4() || !seen.insert({addr, target}).second) continue;
            d.backends.push_back({addr, target, state, e.node, e.zone});
          }
        }
      }
      std::sort(d.backends.begin(), d.backends.end(), [](const auto& x, const auto& y) {
        return x.addr != y.addr ? x.addr < y.addr : x.port < y.port;
      });
      if (!d.external_traffic_local) {
        d.announce_candidates = all_ready;
      } else {
        auto local = std::make_shared<std::vector<std::string>>();
        for (const std::string& n : ready_nodes) {
          if (std::any_of(d.backends.begin(), d.backends.end(), [&](const auto& b) {
                return b.node == n && b.state == BackendState::kActive;
              })) {
            local->push_back(n);
          }
        }
        d.announce_candidates = std::move(local);
      }
      if (d.announce_candidates->empty()) {
        events->push_back({true, "NoAnnouncer",
                           vip.toString() + ":" + std::to_string(port.port) +
                               " has no node to announce it (externalTrafficPolicy: Local needs a "
                               "ready endpoint on a ready node)"});
      }
      out.push_back(std::move(d));
    }
  }
  return out;
}

}  // namespace

IncrementalReconciler::IncrementalReconciler(ReconcilerConfig config)
    : config_(std::move(config)) {}

const Reconciled& IncrementalReconciler::full(const std::vector<IpPool>& pools,
                                              const std::vector<ServicePtr>& services,
                                              const std::vector<SlicePtr>& slices,
                                              const std::vector<NodeObject>& nodes) {
  out_ = Reconciled();
  entries_.clear();
  order_.clear();
  std::vector<const ServicePtr*> served;
  std::unordered_map<std::string, ServiceSettings> settings;
  std::vector<LbService> requests;
  leaving_.clear();
  for (const ServicePtr& p : services) {
    const ServiceObject& s = *p;
    if (!servedByUs(s, config_)) {
      // Other classes are never touched; one that was ours keeps its
      // addresses held until what we wrote is cleared.
      if (!carriesOurMarks(s)) continue;
      LbService hold = toAllocatorView(s, ServiceSettings());
      hold.hold_only = true;
      hold.families.clear();
      for (const IpAddr& a : s.status.ips) {
        const Family f = a.isV4() ? Family::kV4 : Family::kV6;
        if (std::find(hold.families.begin(), hold.families.end(), f) == hold.families.end()) {
          hold.families.push_back(f);
        }
      }
      hold.ports.clear();
      hold.sharing_key.clear();
      requests.push_back(std::move(hold));
      leaving_.insert(s.meta.key());
      continue;
    }
    served.push_back(&p);
    ServiceSettings st = parseServiceSettings(s.meta.annotations, s.spec.load_balancer_ip);
    requests.push_back(toAllocatorView(s, st));
    settings[s.meta.key()] = std::move(st);
  }
  std::sort(served.begin(), served.end(), [](const auto* a, const auto* b) {
    return std::tie((*a)->meta.ns, (*a)->meta.name) < std::tie((*b)->meta.ns, (*b)->meta.name);
  });
  const auto allocations = Allocator::allocate(pools, requests);
  out_.pools = Allocator::usage(pools, allocations);
  for (const std::string& key : leaving_) out_.leaving.push_back({key, allocations.at(key).ips});

  std::unordered_map<std::string, std::vector<const EndpointSliceObject*>> slices_by_service;
  for (const SlicePtr& e : slices) {
    slices_by_service[e->meta.ns + "/" + e->service].push_back(e.get());
  }
  ready_nodes_.clear();
  for (const NodeObject& n : nodes) {
    if (n.ready) ready_nodes_.push_back(n.name);
  }
  std::sort(ready_nodes_.begin(), ready_nodes_.end());
  all_ready_ = std::make_shared<const std::vector<std::string>>(ready_nodes_);

  for (const ServicePtr* p : served) {
    const ServiceObject* s = p->get();
    const std::string key = s->meta.key();
    Entry& e = entries_[key];
    e.svc = *p;
    e.settings = std::move(settings[key]);
    const Allocation& a = allocations.at(key);
    ServiceOutcome o;
    o.key = key;
    o.ips = a.ips;
    o.pool = a.pool;
    o.satisfied = a.satisfied;
    o.reason = reasonName(a.reason);
    o.message = a.message;
    for (const std::string& err : e.settings.errors) {
      o.events.push_back({true, "InvalidAnnotation", err});
    }
    for (const std::string& c : a.conflicts) {
      o.events.push_back({true, reasonName(Reason::kAddressConflict), c});
    }
    if (!a.satisfied || a.reason != Reason::kAllocated) {
      o.events.push_back({true, reasonName(a.reason), a.message});
    }
    if (a.satisfied) {
      std::string list;
      for (const IpAddr& ip : a.ips) list += (list.empty() ? "" : ", ") + ip.toString();
      // News only when the address is new (not at every restart).
      if (s->status.ips != a.ips) {
        o.events.push_back({false, "IPAllocated",
                            "assigned " + list + (a.pool.empty() ? "" : " from pool " + a.pool)});
      }
      if (o.message.empty()) o.message = "assigned " + list;
    }
    e.base_events = o.events.size();
    e.outcome = out_.services.size();
    for (DesiredService& d : buildDesired(*s, e.settings, o.ips, slices_by_service[key],
                                          ready_nodes_, all_ready_, &o.events)) {
      e.desired.push_back(std::make_shared<const DesiredService>(std::move(d)));
    }
    order_.push_back(key);
    out_.services.push_back(std::move(o));
  }
  assemble();
  out_.revision = ++revision_;
  return out_;
}

bool IncrementalReconciler::serves(const std::string& service_key) const {
  return entries_.count(service_key) != 0;
}

const ServiceOutcome* IncrementalReconciler::outcomeOf(const std::string& service_key) const {
  auto it = entries_.find(service_key);
  return it == entries_.end() ? nullptr : &out_.services[it->second.outcome];
}

const std::vector<IpAddr>* IncrementalReconciler::addressesOf(
    const std::string& service_key) const {
  auto it = entries_.find(service_key);
  return it == entries_.end() ? nullptr : &out_.services[it->second.outcome].ips;
}

const ServiceObject* IncrementalReconciler::serviceOf(const std::string& service_key) const {
  auto it = entries_.find(service_key);
  return it == entries_.end() ? nullptr : it->second.svc.get();
}

const Reconciled& IncrementalReconciler::endpointsChanged(
    const std::vector<std::string>& service_keys, const std::vector<EndpointSliceObject>& slices) {
  std::unordered_map<std::string, std::vector<const EndpointSliceObject*>> by_service;
  for (const EndpointSliceObject& e : slices) {
    by_service[e.meta.ns + "/" + e.service].push_back(&e);
  }
  auto delta = std::make_shared<DesiredDelta>();
  std::set<IpAddr> vips;
  bool reshaped = false;  // entries came or went: cannot be patched in place
  for (const std::string& key : service_keys) {
    auto it = entries_.find(key);
    if (it == entries_.end()) continue;  // not ours
    Entry& e = it->second;
    ServiceOutcome& o = out_.services[e.outcome];
    o.events.resize(e.base_events);
    std::vector<std::shared_ptr<const DesiredService>> rebuilt;
    for (DesiredService& d : buildDesired(*e.svc, e.settings, o.ips, by_service[key], ready_nodes_,
                                          all_ready_, &o.events)) {
      rebuilt.push_back(std::make_shared<const DesiredService>(std::move(d)));
    }
    // The same addresses and ports give the same keys; anything else is
    // not an endpoint change.
    reshaped = reshaped || rebuilt.size() != e.desired.size() ||
               !std::equal(rebuilt.begin(), rebuilt.end(), e.desired.begin(),
                           [](const auto& a, const auto& b) { return a->key == b->key; });
    e.desired = std::move(rebuilt);
    if (reshaped) continue;
    for (size_t i = 0; i < e.desired.size(); ++i) {
      out_.desired[e.first + i] = e.desired[i];
      delta->upserts.push_back(e.desired[i]);
      vips.insert(e.desired[i]->vip);
    }
  }
  out_.revision = ++revision_;
  if (reshaped) {
    assemble();
    out_.delta = nullptr;  // compare it whole
    return out_;
  }
  std::sort(delta->upserts.begin(), delta->upserts.end(),
            [](const auto& a, const auto& b) { return a->key < b->key; });
  // Only the VIPs of what was rebuilt can have new candidates.
  for (const IpAddr& vip : vips) {
    auto at = std::lower_bound(out_.vips.begin(), out_.vips.end(), vip,
                               [](const VipCandidates& v, const IpAddr& a) { return v.vip < a; });
    if (at == out_.vips.end() || at->vip != vip) continue;
    auto now = candidatesOf(vip, vip_users_[static_cast<size_t>(at - out_.vips.begin())]);
    if (now == at->candidates || *now == *at->candidates) continue;
    at->candidates = std::move(now);
    delta->vips.push_back(*at);
  }
  out_.delta = std::move(delta);
  return out_;
}

std::shared_ptr<const std::vector<std::string>> IncrementalReconciler::candidatesOf(
    const IpAddr& vip, const std::vector<std::string>& keys) const {
  std::shared_ptr<const std::vector<std::string>> out;
  for (const std::string& key : keys) {
    for (const auto& d : entries_.at(key).desired) {
      if (d->vip != vip) continue;
      if (!out) {
        out = d->announce_candidates;
        continue;
      }
      if (out == d->announce_candidates) continue;
      auto both = std::make_shared<std::vector<std::string>>();
      std::set_intersection(out->begin(), out->end(), d->announce_candidates->begin(),
                            d->announce_candidates->end(), std::back_inserter(*both));
      out = std::move(both);
    }
  }
  return out;
}

void IncrementalReconciler::assemble() {
  out_.desired.clear();
  out_.delta = nullptr;
  size_t total = 0;
  for (const auto& [k, e] : entries_) total += e.desired.size();
  out_.desired.reserve(total);
  // Per VIP, the Services on it (in order_); their candidates: the nodes
  // that may announce every service on it (the shared list of all ready
  // nodes unless a Local service narrows it).
  std::map<IpAddr, std::vector<std::string>> users;
  for (const std::string& key : order_) {
    Entry& e = entries_.at(key);
    e.first = out_.desired.size();
    for (const auto& d : e.desired) {
      out_.desired.push_back(d);
      std::vector<std::string>& u = users[d->vip];
      if (u.empty() || u.back() != key) u.push_back(key);
    }
  }
  out_.vips.clear();
  out_.vips.reserve(users.size());
  vip_users_.clear();
  vip_users_.reserve(users.size());
  for (auto& [vip, keys] : users) {
    out_.vips.push_back({vip, candidatesOf(vip, keys)});
    vip_users_.push_back(std::move(keys));
  }
  out_.nodes = ready_nodes_;
}

Reconciled reconcile(const ReconcilerConfig& config, const std::vector<IpPool>& pools,
                     const std::vector<ServiceObject>& services,
                     const std::vector<EndpointSliceObject>& slices,
                     const std::vector<NodeObject>& nodes) {
  IncrementalReconciler r(config);
  return r.full(pools, services, slices, nodes);
}

}  // namespace flowlb::controller
