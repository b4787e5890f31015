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
    if (!sameInputs(before->svc, *c.now)) return {true, {}};
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
                                              const std::vector<ServiceObject>& services,
                                              const std::vector<EndpointSliceObject>& slices,
                                              const std::vector<NodeObject>& nodes) {
  out_ = Reconciled();
  entries_.clear();
  order_.clear();
  std::vector<const ServiceObject*> served;
  std::unordered_map<std::string, ServiceSettings> settings;
  std::vector<LbService> requests;
  leaving_.clear();
  for (const ServiceObject& s : services) {
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
    served.push_back(&s);
    ServiceSettings st = parseServiceSettings(s.meta.annotations, s.spec.load_balancer_ip);
    requests.push_back(toAllocatorView(s, st));
    settings[s.meta.key()] = std::move(st);
  }
  std::sort(served.begin(), served.end(), [](const auto* a, const auto* b) {
    return std::tie(a->meta.ns, a->meta.name) < std::tie(b->meta.ns, b->meta.name);
  });
  const auto allocations = Allocator::allocate(pools, requests);
  out_.pools = Allocator::usage(pools, allocations);
  for (const std::string& key : leaving_) out_.leaving.push_back({key, allocations.at(key).ips});

  std::unordered_map<std::string, std::vector<const EndpointSliceObject*>> slices_by_service;
  for (const EndpointSliceObject& e : slices) {
    slices_by_service[e.meta.ns + "/" + e.service].push_back(&e);
  }
  ready_nodes_.clear();
  for (const NodeObject& n : nodes) {
    if (n.ready) ready_nodes_.push_back(n.name);
  }
  std::sort(ready_nodes_.begin(), ready_nodes_.end());
  all_ready_ = std::make_shared<const std::vector<std::string>>(ready_nodes_);

  for (const ServiceObject* s : served) {
    const std::string key = s->meta.key();
    Entry& e = entries_[key];
    e.svc = *s;
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
  return it == entries_.end() ? nullptr : &it->second.svc;
}

const Reconciled& IncrementalReconciler::endpointsChanged(
    const std::vector<std::string>& service_keys, const std::vector<EndpointSliceObject>& slices) {
  std::unordered_map<std::string, std::vector<const EndpointSliceObject*>> by_service;
  for (const EndpointSliceObject& e : slices) {
    by_service[e.meta.ns + "/" + e.service].push_back(&e);
  }
  for (const std::string& key : service_keys) {
    auto it = entries_.find(key);
    if (it == entries_.end()) continue;  // not ours
    Entry& e = it->second;
    ServiceOutcome& o = out_.services[e.outcome];
    o.events.resize(e.base_events);
    e.desired.clear();
    for (DesiredService& d : buildDesired(e.svc, e.settings, o.ips, by_service[key], ready_nodes_,
                                          all_ready_, &o.events)) {
      e.desired.push_back(std::make_shared<const DesiredService>(std::move(d)));
    }
  }
  assemble();
  return out_;
}

void IncrementalReconciler::assemble() {
  out_.desired.clear();
  size_t total = 0;
  for (const auto& [k, e] : entries_) total += e.desired.size();
  out_.desired.reserve(total);
  // Per VIP: the nodes that may announce every service on it (the shared
  // list of all ready nodes unless a Local service narrows it).
  std::map<IpAddr, std::shared_ptr<const std::vector<std::string>>> vips;
  for (const std::string& key : order_) {
    for (const auto& d : entries_.at(key).desired) {
      out_.desired.push_back(d);
      auto [it, fresh] = vips.try_emplace(d->vip, d->announce_candidates);
      if (fresh || it->second == d->announce_candidates) continue;
      auto both = std::make_shared<std::vector<std::string>>();
      std::set_intersection(it->second->begin(), it->second->end(), d->announce_candidates->begin(),
                            d->announce_candidates->end(), std::back_inserter(*both));
      it->second = std::move(both);
    }
  }
  out_.vips.clear();
  out_.vips.reserve(vips.size());
  for (auto& [vip, candidates] : vips) out_.vips.push_back({vip, std::move(candidates)});
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
