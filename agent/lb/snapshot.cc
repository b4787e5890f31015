#include "agent/lb/snapshot.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>

#include "agent/packet/packet.h"
#include "common/hash.h"
#include "common/maglev_sizing.h"

namespace flowlb::agent {
namespace {

uint64_t serviceHash(const IpAddr& vip, uint16_t port, uint8_t proto) {
  const uint64_t hi = loadLe64(vip.bytes.data());
  const uint64_t lo = loadLe64(vip.bytes.data() + 8);
  return mix64(hi ^ mix64(lo ^ (uint64_t{port} << 8 | proto)));
}

std::string where(const ServiceSpec& s) {
  return "service '" + s.name + "' (" + s.vip.toString() + ":" + std::to_string(s.port) + ")";
}

uint32_t clampMs(uint64_t seconds) {
  return static_cast<uint32_t>(std::min<uint64_t>(seconds * 1000, kMaxTimeoutMs));
}

// Identity of a table's inputs: two services whose tables would be equal
// share one. Members are compared in full on a hash match.
struct TableInputs {
  std::vector<MaglevBackend> members;  // sorted by key
  uint32_t size = 0;
  uint64_t seed = 0;

  uint64_t hash() const {
    uint64_t h = mix64(uint64_t{size} ^ mix64(seed));
    for (const MaglevBackend& m : members) {
      h = hashBytes(m.key.data(), m.key.size(), h ^ m.weight);
    }
    return h;
  }
  bool matches(const MaglevTable& t) const {
    if (t.size() != size || t.seed() != seed || t.backends().size() != members.size()) return false;
    for (size_t i = 0; i < members.size(); ++i) {
      if (t.backends()[i].key != members[i].key || t.backends()[i].weight != members[i].weight) {
        return false;
      }
    }
    return true;
  }
};

size_t bytesOf(const MaglevTable& t) {
  size_t bytes = sizeof(MaglevTable) + size_t{t.size()} * sizeof(uint32_t);
  for (const MaglevBackend& b : t.backends()) bytes += sizeof(MaglevBackend) + b.key.capacity();
  return bytes;
}

// The tables a build can reuse or has built, by their inputs.
class TableCache {
 public:
  void add(const std::shared_ptr<const MaglevTable>& t, uint64_t h) {
    if (t) by_hash_[h].push_back(t);
  }
  std::shared_ptr<const MaglevTable> find(const TableInputs& in, uint64_t h) const {
    auto it = by_hash_.find(h);
    if (it == by_hash_.end()) return nullptr;
    for (const auto& t : it->second) {
      if (in.matches(*t)) return t;
    }
    return nullptr;
  }

 private:
  std::unordered_map<uint64_t, std::vector<std::shared_ptr<const MaglevTable>>> by_hash_;
};

uint64_t inputsHashOf(const MaglevTable& t) {
  TableInputs in{t.backends(), t.size(), t.seed()};
  return in.hash();
}

}  // namespace

void Snapshot::buildIndex() {
  size_t cap = 16;
  while (cap < services.size() * 2) cap <<= 1;
  index_.assign(cap, -1);
  for (size_t i = 0; i < services.size(); ++i) {
    const ServiceSpec& s = services[i].spec;
    size_t pos = serviceHash(s.vip, s.port, s.proto) & (cap - 1);
    while (index_[pos] != -1) pos = (pos + 1) & (cap - 1);
    index_[pos] = static_cast<int32_t>(i);
  }
}

int Snapshot::findService(const IpAddr& vip, uint16_t port, uint8_t proto) const {
  if (index_.empty()) return -1;
  const size_t mask = index_.size() - 1;
  for (size_t pos = serviceHash(vip, port, proto) & mask;; pos = (pos + 1) & mask) {
    const int32_t i = index_[pos];
    if (i < 0) return -1;
    const ServiceSpec& s = services[static_cast<size_t>(i)].spec;
    if (s.port == port && s.proto == proto && s.vip == vip) return i;
  }
}

size_t Snapshot::tableBytes() const {
  std::set<const MaglevTable*> seen;
  size_t bytes = 0;
  for (const ServiceRuntime& s : services) {
    for (const MaglevTable* t : {s.table.get(), s.prev_table.get()}) {
      if (t != nullptr && seen.insert(t).second) bytes += bytesOf(*t);
    }
  }
  return bytes;
}

std::set<SteerKey> steeringKeys(const Snapshot& snap) {
  std::set<SteerKey> keys;
  for (const ServiceRuntime& s : snap.services)
    addServiceKeys(s.spec.vip, s.spec.port, s.spec.proto, &keys);
  // NAT replies to a VIP (--nat-source=vip): its whole-address entry, for
  // each protocol of a NAT service, also matches the SNAT port range.
  if (snap.snat.vip_source) {
    for (const ServiceRuntime& s : snap.services) {
      if (s.spec.mode != ForwardingMode::kNat || s.spec.announced_by_bgp) continue;
      keys.erase({s.spec.vip, 0, s.spec.proto, false});
      keys.insert({s.spec.vip, 0, s.spec.proto, true});
    }
  }
  if (snap.snat.has_v4) addSnatKeys(snap.snat.v4, &keys);
  if (snap.snat.has_v6) addSnatKeys(snap.snat.v6, &keys);
  return keys;
}

// Backend ids for one build without touching the registry: known backends
// keep theirs; new ones get a free slot (its tag bumped) or a new one. The
// allocations are recorded in the outcome and adopted by commit().
class SnapshotBuilder::IdAllocator {
 public:
  IdAllocator(const SnapshotBuilder& b, Outcome& out)
      : b_(b), out_(out), next_index_(static_cast<uint32_t>(b.registry_.size())) {}

  uint32_t idFor(const IpAddr& addr, uint16_t port) {
    if (auto it = b_.index_.find({addr, port}); it != b_.index_.end()) {
      return b_.registry_[it->second].id;
    }
    if (auto it = fresh_.find({addr, port}); it != fresh_.end()) return it->second;
    uint32_t index;
    if (out_.free_used < b_.free_.size()) {
      index = b_.free_[b_.free_.size() - 1 - out_.free_used++];
    } else {
      index = next_index_++;
    }
    const uint8_t old_tag = index < b_.registry_.size() ? b_.registry_[index].tag : 0;
    const uint32_t id = uint32_t{static_cast<uint8_t>(old_tag + 1)} << kBackendIndexBits | index;
    fresh_[{addr, port}] = id;
    out_.fresh_ids.push_back({addr, port, id});
    return id;
  }

 private:
  const SnapshotBuilder& b_;
  Outcome& out_;
  uint32_t next_index_;
  std::map<std::pair<IpAddr, uint16_t>, uint32_t> fresh_;
};

Result<SnapshotBuilder::Outcome> SnapshotBuilder::prepare(const DesiredState& desired,
                                                          const SnatConfig& snat,
                                                          uint64_t now_ms) const {
  if (snat.port_min == 0 || snat.port_min > snat.port_max) {
    return Status::error("SNAT port range " + std::to_string(snat.port_min) + "-" +
                         std::to_string(snat.port_max) + " is empty or starts at 0");
  }
  Outcome out;
  auto next = std::make_shared<Snapshot>();
  next->generation = desired.generation;
  next->snat = snat;

  // The last version of each service, by name: a refused service keeps it.
  std::unordered_map<std::string, const ServiceRuntime*> last_by_name;
  if (last_) {
    for (const ServiceRuntime& s : last_->services) last_by_name[s.spec.name] = &s;
  }

  // 1. Each service on its own. A refused one falls back to its last version.
  struct Candidate {
    const ServiceSpec* spec;
    bool was_programmed;  // in the last snapshot under this name
  };
  std::vector<Candidate> candidates;
  candidates.reserve(desired.services.size());
  std::set<std::string> names;
  const auto refuse = [&](const ServiceSpec& s, ServiceError e) -> const ServiceSpec* {
    auto last = last_by_name.find(s.name);
    if (last != last_by_name.end() && !validateService(last->second->spec, snat)) {
      e.message += "; its previous version stays in force";
      out.errors.push_back(std::move(e));
      return &last->second->spec;
    }
    out.errors.push_back(std::move(e));
    return nullptr;
  };
  for (const ServiceSpec& s : desired.services) {
    if (!names.insert(s.name).second) {
      out.errors.push_back({s.name, ApplyErrorCode::kConflict,
                            where(s) + ": another service of this state has the same key"});
      continue;
    }
    const ServiceSpec* use = &s;
    if (auto e = validateService(s, snat, &out.warnings)) use = refuse(s, std::move(*e));
    if (use != nullptr) candidates.push_back({use, last_by_name.count(s.name) > 0});
  }

  // 2. Admission, in priority order: services already programmed first (an
  // update never evicts them for new ones), then by key. The smallest key
  // wins a VIP:port:protocol; what would overflow the VIP map or the table
  // budget is refused.
  std::vector<size_t> order(candidates.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (candidates[a].was_programmed != candidates[b].was_programmed) {
      return candidates[a].was_programmed;
    }
    return candidates[a].spec->name < candidates[b].spec->name;
  });
  std::map<std::tuple<IpAddr, uint16_t, uint8_t>, std::string> owner;
  for (const Candidate& c : candidates) {  // the smallest key of each VIP:port:protocol
    const auto k = std::make_tuple(c.spec->vip, c.spec->port, c.spec->proto);
    auto [it, fresh] = owner.emplace(k, c.spec->name);
    if (!fresh && c.spec->name < it->second) it->second = c.spec->name;
  }
  std::set<SteerKey> keys;
  if (snat.has_v4) addSnatKeys(snat.v4, &keys);
  if (snat.has_v6) addSnatKeys(snat.v6, &keys);

  TableCache cache;
  if (last_) {
    for (const ServiceRuntime& s : last_->services) {
      cache.add(s.table, inputsHashOf(*s.table));
      if (s.prev_table) cache.add(s.prev_table, inputsHashOf(*s.prev_table));
    }
  }
  std::set<const MaglevTable*> counted;
  size_t table_bytes = 0;

  IdAllocator ids(*this, out);
  out.referenced.assign(registry_.size(), false);
  std::vector<std::optional<ServiceRuntime>> built(candidates.size());
  std::vector<std::vector<const BackendSpec*>> built_specs(candidates.size());  // table order
  std::vector<bool> built_fail_open(candidates.size(), false);
  for (size_t oi : order) {
    const ServiceSpec& s = *candidates[oi].spec;
    const auto k = std::make_tuple(s.vip, s.port, s.proto);
    if (owner[k] != s.name) {
      out.errors.push_back({s.name, ApplyErrorCode::kConflict,
                            where(s) + ": same VIP, port and protocol as '" + owner[k] + "'"});
      continue;
    }
    std::set<SteerKey> mine;
    addServiceKeys(s.vip, s.port, s.proto, &mine);
    size_t added = 0;
    for (const SteerKey& key : mine) added += keys.count(key) == 0 ? 1 : 0;
    if (keys.size() + added > limits_.max_steering_keys) {
      out.errors.push_back(
          {s.name, ApplyErrorCode::kResourceExhausted,
           where(s) + ": the XDP program's VIP map is full (" +
               std::to_string(limits_.max_steering_keys) +
               " entries; raise --max-vip-entries, the chart's agent.maxVipEntries)"});
      continue;
    }

    ServiceRuntime rt;
    rt.spec = s;
    rt.timeouts = defaults_;
    if (s.idle_timeout_s != 0) {
      rt.timeouts.established_ms = clampMs(s.idle_timeout_s);
      rt.timeouts.udp_ms = clampMs(s.idle_timeout_s);
    }
    TableInputs in;
    in.size = s.maglev_size != 0 ? s.maglev_size : maglevSizeFor(s.backends.size());
    in.seed = s.hash_seed;
    std::map<std::string, const BackendSpec*> members;
    // Fail open: when no backend would take new flows and some are only
    // unhealthy, those take them (every node decides the same from the same
    // state, so the tables stay equal).
    bool fail_open = false;
    {
      bool serving = false, unhealthy = false;
      for (const BackendSpec& b : s.backends) {
        serving = serving || (b.state == BackendState::kActive && b.weight > 0);
        unhealthy = unhealthy || (b.state == BackendState::kUnhealthy && b.weight > 0);
      }
      fail_open = !serving && unhealthy;
      built_fail_open[oi] = fail_open;
      if (fail_open) {
        out.warnings.push_back(where(s) + ": every backend is unhealthy; failing open to them");
      }
    }
    for (const BackendSpec& b : s.backends) {
      if (b.state == BackendState::kDraining && s.drain_timeout_s > 0) {
        const std::string dk = s.name + "|" + b.key();
        auto known = draining_since_ms_.find(dk);
        const uint64_t since = known != draining_since_ms_.end() ? known->second : now_ms;
        out.draining_since_ms[dk] = since;
        const uint64_t deadline = since + uint64_t{s.drain_timeout_s} * 1000;
        if (now_ms >= deadline) {  // drained: its remaining flows go elsewhere
          if (!drained_.count(dk)) {
            out.drained.push_back(dk);
            out.warnings.push_back(where(s) + ": backend " + b.key() + " finished draining");
          }
          out.drained_keys.insert(dk);
          continue;
        }
        out.next_deadline_ms = std::min(out.next_deadline_ms, deadline);
      }
      members[b.key()] = &b;
      const bool takes_new =
          b.state == BackendState::kActive || (b.state == BackendState::kUnhealthy && fail_open);
      in.members.push_back({b.key(), takes_new ? b.weight : 0});
    }
    std::sort(in.members.begin(), in.members.end(),
              [](const MaglevBackend& a, const MaglevBackend& b) { return a.key < b.key; });
    const uint64_t h = in.hash();
    rt.table = cache.find(in, h);
    if (!rt.table) {
      std::string warning;
      auto table = MaglevTable::build(in.members, in.size, in.seed, &warning);
      if (!table) {
        out.errors.push_back(
            {s.name, ApplyErrorCode::kInvalidArgument, where(s) + ": " + table.error()});
        continue;
      }
      if (!warning.empty()) out.warnings.push_back(where(s) + ": " + warning);
      rt.table = std::make_shared<const MaglevTable>(std::move(*table));
      cache.add(rt.table, h);
    }
    const size_t bytes = counted.count(rt.table.get()) ? 0 : bytesOf(*rt.table);
    if (table_bytes + bytes > limits_.table_budget_bytes) {
      out.errors.push_back({s.name, ApplyErrorCode::kResourceExhausted,
                            where(s) + ": its Maglev table (" + std::to_string(bytes / 1024) +
                                " KiB) does not fit the agent's table memory budget (" +
                                std::to_string(limits_.table_budget_bytes >> 20) +
                                " MiB; raise --table-memory-mb, the chart's agent.tableMemoryMB)"});
      continue;
    }
    counted.insert(rt.table.get());
    table_bytes += bytes;
    keys.insert(mine.begin(), mine.end());

    for (const MaglevBackend& m : rt.table->backends()) {
      const BackendSpec* b = members.at(m.key);
      rt.ids.push_back(ids.idFor(b->addr, b->port));
      built_specs[oi].push_back(b);
    }
    // The previous generation's table of the same service, kept for the
    // grace period after the table changed (rule 6), then dropped.
    auto last = last_by_name.find(s.name);
    if (last != last_by_name.end()) {
      const ServiceRuntime& p = *last->second;
      if (p.table->fingerprint() != rt.table->fingerprint()) {
        rt.prev_table = p.table;
        rt.prev_ids = p.ids;
        rt.prev_until_ms = now_ms + limits_.previous_table_grace_ms;
      } else if (p.prev_table && now_ms < p.prev_until_ms) {
        rt.prev_table = p.prev_table;
        rt.prev_ids = p.prev_ids;
        rt.prev_until_ms = p.prev_until_ms;
      }
      if (rt.prev_table) out.next_deadline_ms = std::min(out.next_deadline_ms, rt.prev_until_ms);
    }
    built[oi] = std::move(rt);
  }

  // 3. The snapshot, in the desired order; backends indexed by id.
  std::vector<BackendRuntime> backends;
  for (size_t ci = 0; ci < built.size(); ++ci) {
    auto& rt = built[ci];
    if (!rt) continue;
    for (size_t i = 0; i < rt->ids.size(); ++i) {
      const uint32_t id = rt->ids[i];
      const uint32_t index = id & kBackendIndexMask;
      const BackendSpec* spec = built_specs[ci][i];
      if (index >= backends.size()) backends.resize(index + 1);
      if (index < out.referenced.size()) out.referenced[index] = true;
      BackendRuntime& br = backends[index];
      // A backend shared by services is ACTIVE if any of them has it active
      // (an unhealthy one is, for a service that fails open to it).
      const bool was_present = br.present;
      const BackendState state = spec->state == BackendState::kUnhealthy && built_fail_open[ci]
                                     ? BackendState::kActive
                                     : spec->state;
      br = BackendRuntime{
          id, spec->addr, spec->port,
          was_present && br.state == BackendState::kActive ? BackendState::kActive : state, true};
    }
    next->services.push_back(std::move(*rt));
  }
  next->backends = std::move(backends);
  next->buildIndex();
  out.snapshot = std::move(next);
  return out;
}

void SnapshotBuilder::commit(const Outcome& o) {
  for (const Outcome::Fresh& f : o.fresh_ids) {
    const uint32_t index = f.id & kBackendIndexMask;
    if (index >= registry_.size()) registry_.resize(index + 1);
    Slot& s = registry_[index];
    s.addr = f.addr;
    s.port = f.port;
    s.id = f.id;
    s.used = true;
    s.tag = static_cast<uint8_t>(f.id >> kBackendIndexBits);
    index_[{f.addr, f.port}] = index;
  }
  free_.resize(free_.size() - o.free_used);
  // Ids no longer referenced go back to the pool; their tag changes on reuse.
  std::set<uint32_t> fresh;
  for (const Outcome::Fresh& f : o.fresh_ids) fresh.insert(f.id & kBackendIndexMask);
  for (size_t i = 0; i < registry_.size(); ++i) {
    const bool referenced =
        fresh.count(static_cast<uint32_t>(i)) || (i < o.referenced.size() && o.referenced[i]);
    if (registry_[i].used && !referenced) {
      registry_[i].used = false;
      index_.erase({registry_[i].addr, registry_[i].port});
      free_.push_back(static_cast<uint32_t>(i));
    }
  }
  last_ = o.snapshot;
  draining_since_ms_ = o.draining_since_ms;
  drained_ = o.drained_keys;
  next_deadline_ms_ = o.next_deadline_ms;
}

Result<SnapshotBuilder::Outcome> SnapshotBuilder::build(const DesiredState& desired,
                                                        const SnatConfig& snat, uint64_t now_ms) {
  auto o = prepare(desired, snat, now_ms);
  if (o) commit(*o);
  return o;
}

}  // namespace flowlb::agent
