#include "controller/allocator/allocator.h"

#include <algorithm>
#include <optional>
#include <set>

namespace flowlb::controller {
namespace {

Family familyOf(const IpAddr& a) {
  return a.isV4() ? Family::kV4 : Family::kV6;
}
const char* familyName(Family f) {
  return f == Family::kV4 ? "IPv4" : "IPv6";
}

void increment(IpAddr& a) {
  for (int i = 15; i >= 0; --i) {
    if (++a.bytes[static_cast<size_t>(i)] != 0) return;
  }
}

bool buggy(const IpAddr& a) {
  return a.isV4() && (a.bytes[15] == 0 || a.bytes[15] == 255);
}

// The subnet-router anycast address (RFC 4291 2.6.1) of the address's /64:
// routers answer it, so a VIP there is unreachable.
bool subnetRouterAnycast(const IpAddr& a) {
  if (a.isV4()) return false;
  for (size_t i = 8; i < 16; ++i) {
    if (a.bytes[i] != 0) return false;
  }
  return true;
}

std::string portName(const ServicePort& p) {
  return std::to_string(p.port) + (p.proto == 17 ? "/UDP" : p.proto == 132 ? "/SCTP" : "/TCP");
}

// Who holds an address.
struct Holder {
  std::string sharing_key;
  std::set<ServicePort> ports;
  std::vector<std::string> owners;
  std::string pool;
};

class Run {
 public:
  Run(const std::vector<IpPool>& pools, const std::vector<LbService>& services)
      : pools_(pools), services_(services) {
    for (size_t i = 0; i < services_.size(); ++i) order_.push_back(i);
    // Older Services first; the name breaks ties so the answer never
    // depends on the order the caches listed things in.
    std::sort(order_.begin(), order_.end(), [this](size_t a, size_t b) {
      const LbService& x = services_[a];
      const LbService& y = services_[b];
      return x.created != y.created ? x.created < y.created : x.key() < y.key();
    });
  }

  std::map<std::string, Allocation> go() {
    for (size_t i : order_) keepCurrent(services_[i]);
    for (size_t i : order_) {
      if (!services_[i].hold_only) takeRequested(services_[i]);
    }
    for (size_t i : order_) {
      if (!services_[i].hold_only) assignFree(services_[i]);
    }
    std::map<std::string, Allocation> out;
    for (size_t i : order_) out[services_[i].key()] = finish(services_[i]);
    return out;
  }

 private:
  struct State {
    std::map<Family, IpAddr> got;
    std::map<Family, std::string> pool;
    Reason reason = Reason::kAllocated;
    std::string message;
    std::vector<std::string> conflicts;
    bool failed_explicit = false;  // a request that must not fall back to auto
  };

  const IpPool* poolOf(const IpAddr& a) const {
    for (const IpPool& p : pools_) {
      for (const AddressRange& r : p.ranges) {
        if (r.contains(a)) return &p;
      }
    }
    return nullptr;
  }
  const IpPool* poolNamed(const std::string& name) const {
    for (const IpPool& p : pools_) {
      if (p.name == name) return &p;
    }
    return nullptr;
  }
  static bool serves(const IpPool& p, const LbService& s) {
    if (!p.namespaces.empty() &&
        std::find(p.namespaces.begin(), p.namespaces.end(), s.ns) == p.namespaces.end()) {
      return false;
    }
    for (const auto& [k, v] : p.service_selector) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) return false;
    }
    return true;
  }
  bool wants(const LbService& s, Family f) const {
    return std::find(s.families.begin(), s.families.end(), f) != s.families.end();
  }
  void fail(State& st, Reason r, std::string message) {
    if (st.reason == Reason::kAllocated) {
      st.reason = r;
      st.message = std::move(message);
    }
  }

  // Empty when `s` may use `a`; else why not.
  std::string clash(const LbService& s, const IpAddr& a, Reason* reason) const {
    auto it = holders_.find(a);
    if (it == holders_.end()) return {};
    const Holder& h = it->second;
    if (s.sharing_key.empty() || h.sharing_key != s.sharing_key) {
      *reason = Reason::kRequestedIpTaken;
      return a.toString() + " is used by " + h.owners.front() +
             "; give both Services the same flowlb.io/sharing-key (with different ports) or "
             "choose another address";
    }
    for (const ServicePort& p : s.ports) {
      if (h.ports.count(p)) {
        *reason = Reason::kPortConflict;
        return "sharing key '" + s.sharing_key + "': port " + portName(p) + " on " + a.toString() +
               " is already used by " + h.owners.front();
      }
    }
    return {};
  }
  void hold(const LbService& s, const IpAddr& a, const std::string& pool) {
    Holder& h = holders_[a];
    if (h.owners.empty()) {
      h.sharing_key = s.sharing_key;
      h.pool = pool;
    }
    h.owners.push_back(s.key());
    h.ports.insert(s.ports.begin(), s.ports.end());
  }

  void keepCurrent(const LbService& s) {
    State& st = state_[s.key()];
    for (const IpAddr& a : s.current) {
      const Family f = familyOf(a);
      if (s.hold_only && poolOf(a) == nullptr) continue;  // not one of ours
      if (!s.hold_only && (!wants(s, f) || st.got.count(f))) continue;
      Reason r = Reason::kAllocated;
      if (!clash(s, a, &r).empty()) {
        st.conflicts.push_back("the status held " + a.toString() + ", which " +
                               holders_.at(a).owners.front() +
                               " (an older Service) holds; a new address is allocated instead");
        continue;
      }
      const IpPool* p = poolOf(a);
      // A pool shrunk or deleted under a running Service: its address stays
      // (moving it would break clients); it is reported, and goes when the
      // Service releases it.
      if (p == nullptr) {
        st.message = "address " + a.toString() +
                     " is no longer in any IPPool; it stays until the Service releases it";
      }
      st.got[f] = a;
      st.pool[f] = p ? p->name : "";
      hold(s, a, st.pool[f]);
    }
  }

  void takeRequested(const LbService& s) {
    State& st = state_[s.key()];
    for (const IpAddr& a : s.requested) {
      const Family f = familyOf(a);
      if (!wants(s, f)) {
        fail(st, Reason::kRequestedIpNotInPool,
             "requested " + a.toString() + " is " + familyName(f) +
                 ", a family the Service does not ask for (spec.ipFamilies)");
        st.failed_explicit = true;
        continue;
      }
      if (st.got.count(f)) {
        if (!(st.got[f] == a)) {
          fail(st, Reason::kRequestedIpTaken,
               "requested " + a.toString() + " but the Service already holds " +
                   st.got[f].toString() + "; it keeps that address until it is released");
        }
        continue;
      }
      const IpPool* p = poolOf(a);
      if (p == nullptr || (!s.pool.empty() && p->name != s.pool) || !serves(*p, s)) {
        fail(st, Reason::kRequestedIpNotInPool,
             "requested " + a.toString() + " is in no IPPool that serves this Service" +
                 (s.pool.empty() ? "" : " (flowlb.io/pool: " + s.pool + ")"));
        st.failed_explicit = true;
        continue;
      }
      Reason r = Reason::kAllocated;
      if (const std::string why = clash(s, a, &r); !why.empty()) {
        fail(st, r, "requested " + why);
        st.failed_explicit = true;
        continue;
      }
      st.got[f] = a;
      st.pool[f] = p->name;
      hold(s, a, p->name);
    }
  }

  void assignFree(const LbService& s) {
    State& st = state_[s.key()];
    if (st.failed_explicit) return;  // asked for specific addresses: never substitute
    std::vector<const IpPool*> candidates;
    if (!s.pool.empty()) {
      const IpPool* p = poolNamed(s.pool);
      if (p == nullptr) {
        std::string names;
        for (const IpPool& q : pools_) names += (names.empty() ? "" : ", ") + q.name;
        fail(st, Reason::kUnknownPool,
             "flowlb.io/pool names '" + s.pool +
                 "', which does not exist (pools: " + (names.empty() ? "none" : names) + ")");
        return;
      }
      if (p->ranges.empty() && !p->invalid.empty()) {
        std::string why;
        for (const std::string& w : p->invalid) why += (why.empty() ? "" : "; ") + w;
        fail(st, Reason::kInvalidPool,
             "pool '" + s.pool + "' has no valid address (" + why + "); fix the IPPool");
        return;
      }
      if (!serves(*p, s)) {
        fail(st, Reason::kNoMatchingPool,
             "pool '" + s.pool + "' does not serve namespace " + s.ns +
                 " or these labels (its namespaces and serviceSelector)");
        return;
      }
      candidates.push_back(p);
    } else {
      for (const IpPool& p : pools_) {
        if (p.auto_assign && serves(p, s)) candidates.push_back(&p);
      }
    }
    for (Family f : s.families) {
      if (st.got.count(f)) continue;
      if (candidates.empty()) {
        fail(st, Reason::kNoMatchingPool,
             std::string("no IPPool with autoAssign serves namespace ") + s.ns +
                 " and these labels; create one or set flowlb.io/pool");
        return;
      }
      bool found = false;
      // A Service with a sharing key first joins an address of its key.
      if (!s.sharing_key.empty()) {
        for (const auto& [a, h] : holders_) {
          if (familyOf(a) != f || h.sharing_key != s.sharing_key) continue;
          const IpPool* p = poolOf(a);
          if (p == nullptr ||
              std::find(candidates.begin(), candidates.end(), p) == candidates.end())
            continue;
          Reason r = Reason::kAllocated;
          if (!clash(s, a, &r).empty()) continue;
          st.got[f] = a;
          st.pool[f] = p->name;
          hold(s, a, p->name);
          found = true;
          break;
        }
      }
      for (const IpPool* p : candidates) {
        if (found) break;
        for (const AddressRange& r : p->ranges) {
          if (familyOf(r.first) != f) continue;
          if (auto a = lowestFree(*p, r)) {
            st.got[f] = *a;
            st.pool[f] = p->name;
            hold(s, *a, p->name);
            found = true;
            break;
          }
        }
      }
      if (!found) {
        std::string names;
        for (const IpPool* p : candidates) names += (names.empty() ? "'" : ", '") + p->name + "'";
        fail(st, Reason::kPoolExhausted,
             std::string("no free ") + familyName(f) + " address in " + names +
                 "; add addresses to the pool or delete unused LoadBalancer Services");
      }
    }
  }

  std::optional<IpAddr> lowestFree(const IpPool& p, const AddressRange& r) {
    // Walk up, hopping over held addresses. Every address below the range's
    // cursor is known to be held (addresses are only taken during the walk,
    // and a release resets the cursors), so n allocations cost O(n) steps in
    // all, not O(n^2).
    auto [it, fresh] = cursor_.try_emplace(&r, r.first);
    IpAddr a = it->second;
    for (;;) {
      if (!(p.avoid_buggy_ips && buggy(a)) && !subnetRouterAnycast(a) && !holders_.count(a)) {
        it->second = a;
        return a;
      }
      if (a == r.last) {
        it->second = a;
        return std::nullopt;
      }
      increment(a);
    }
  }

  Allocation finish(const LbService& s) {
    State& st = state_[s.key()];
    Allocation out;
    for (Family f : s.families) {
      auto it = st.got.find(f);
      if (it == st.got.end()) continue;
      out.ips.push_back(it->second);
      if (out.pool.empty()) out.pool = st.pool[f];
    }
    const bool all = out.ips.size() == s.families.size();
    // PreferDualStack is satisfied by one family; RequireDualStack needs all.
    out.satisfied = s.require_all_families ? all : !out.ips.empty();
    if (s.require_all_families && !all && !out.ips.empty()) {
      // Half of a required pair is no use: give it back.
      for (const IpAddr& a : out.ips) release(s, a);
      out.ips.clear();
      out.pool.clear();
    }
    out.reason = st.reason;
    out.message = st.message;
    out.conflicts = st.conflicts;
    if (!out.satisfied && out.reason == Reason::kAllocated) out.reason = Reason::kPoolExhausted;
    return out;
  }

  void release(const LbService& s, const IpAddr& a) {
    auto it = holders_.find(a);
    if (it == holders_.end()) return;
    cursor_.clear();
    auto& owners = it->second.owners;
    owners.erase(std::remove(owners.begin(), owners.end(), s.key()), owners.end());
    if (owners.empty()) holders_.erase(it);
  }

  const std::vector<IpPool>& pools_;
  const std::vector<LbService>& services_;
  std::vector<size_t> order_;
  std::map<IpAddr, Holder> holders_;
  std::map<std::string, State> state_;
  std::map<const AddressRange*, IpAddr> cursor_;  // see lowestFree()
};

}  // namespace

const char* reasonName(Reason r) {
  switch (r) {
    case Reason::kAllocated: return "Allocated";
    case Reason::kUnknownPool: return "UnknownPool";
    case Reason::kNoMatchingPool: return "NoMatchingPool";
    case Reason::kPoolExhausted: return "PoolExhausted";
    case Reason::kRequestedIpNotInPool: return "RequestedIPNotInPool";
    case Reason::kRequestedIpTaken: return "RequestedIPTaken";
    case Reason::kPortConflict: return "PortConflict";
    case Reason::kAddressConflict: return "AddressConflict";
    case Reason::kInvalidPool: return "InvalidPool";
  }
  return "Unknown";
}

Result<AddressRange> AddressRange::parse(std::string_view text) {
  const auto dash = text.find('-');
  if (dash != std::string_view::npos) {
    auto a = IpAddr::parse(text.substr(0, dash));
    auto b = IpAddr::parse(text.substr(dash + 1));
    if (!a) return a.status();
    if (!b) return b.status();
    if (a->isV4() != b->isV4())
      return Status::error("range '" + std::string(text) + "' mixes IPv4 and IPv6");
    if (*b < *a) return Status::error("range '" + std::string(text) + "' ends before it starts");
    return AddressRange{*a, *b};
  }
  auto p = IpPrefix::parse(text);
  if (!p) return p.status();
  AddressRange r{p->addr, p->addr};
  const int bits = p->length + (p->addr.isV4() ? 96 : 0);
  for (int i = bits; i < 128; ++i)
    r.last.bytes[static_cast<size_t>(i / 8)] |= static_cast<uint8_t>(0x80 >> (i % 8));
  return r;
}

bool AddressRange::contains(const IpAddr& a) const {
  return a.isV4() == first.isV4() && !(a < first) && !(last < a);
}

namespace {

// The address as a 128-bit number in two halves.
std::pair<uint64_t, uint64_t> halves(const IpAddr& a) {
  uint64_t hi = 0, lo = 0;
  for (size_t i = 0; i < 8; ++i) hi = hi << 8 | a.bytes[i];
  for (size_t i = 8; i < 16; ++i) lo = lo << 8 | a.bytes[i];
  return {hi, lo};
}

// IPv4 addresses ending in .0 or .255 in [first, last].
uint64_t buggyCount(const AddressRange& r) {
  const auto upto = [](int64_t n) -> int64_t {  // in [0, n]
    return n < 0 ? 0 : n / 256 + 1 + (n + 1) / 256;
  };
  const auto v4 = [](const IpAddr& a) {
    return static_cast<int64_t>(uint32_t{a.bytes[12]} << 24 | uint32_t{a.bytes[13]} << 16 |
                                uint32_t{a.bytes[14]} << 8 | a.bytes[15]);
  };
  return static_cast<uint64_t>(upto(v4(r.last)) - upto(v4(r.first) - 1));
}

// IPv6 addresses with a zero interface identifier in [first, last].
uint64_t anycastCount(const AddressRange& r) {
  if (r.first.isV4()) return 0;
  const auto [fhi, flo] = halves(r.first);
  const auto [lhi, llo] = halves(r.last);
  (void)llo;
  const uint64_t whole = lhi - fhi;  // /64 boundaries crossed inside the range
  return whole + (flo == 0 ? 1 : 0);
}

}  // namespace

uint64_t AddressRange::size() const {
  const auto [hi, lo] = halves(last);
  const auto [fhi, flo] = halves(first);
  const uint64_t dhi = hi - fhi - (lo < flo ? 1 : 0);
  const uint64_t dlo = lo - flo;
  if (dhi != 0 || dlo == UINT64_MAX) return UINT64_MAX;
  return dlo + 1;
}

std::map<std::string, Allocation> Allocator::allocate(const std::vector<IpPool>& pools,
                                                      const std::vector<LbService>& services) {
  return Run(pools, services).go();
}

std::map<std::string, PoolUsage> Allocator::usage(const std::vector<IpPool>& pools,
                                                  const std::map<std::string, Allocation>& allocs) {
  std::map<std::string, PoolUsage> out;
  std::set<IpAddr> used;
  for (const auto& [key, a] : allocs) used.insert(a.ips.begin(), a.ips.end());
  for (const IpPool& p : pools) {
    PoolUsage u;
    uint64_t total = 0;
    for (const AddressRange& r : p.ranges) {
      const uint64_t n = r.size();
      total = total > UINT64_MAX - n ? UINT64_MAX : total + n;
      for (const IpAddr& a : used) u.used += r.contains(a);
      if (p.avoid_buggy_ips && r.first.isV4()) total -= buggyCount(r);
      if (total != UINT64_MAX) total -= std::min(total, anycastCount(r));
    }
    u.free = total == UINT64_MAX ? UINT64_MAX : total > u.used ? total - u.used : 0;
    u.invalid = p.invalid;
    out[p.name] = u;
  }
  return out;
}

}  // namespace flowlb::controller
