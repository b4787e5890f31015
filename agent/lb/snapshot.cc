#include "agent/lb/snapshot.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "agent/packet/packet.h"
#include "common/hash.h"

namespace flowlb::agent {
namespace {

// The same backends with the same weights, in any order.
bool sameMembers(const std::vector<MaglevBackend>& a, std::vector<MaglevBackend> b) {
  if (a.size() != b.size()) return false;
  std::vector<MaglevBackend> x = a;
  auto less = [](const MaglevBackend& l, const MaglevBackend& r) { return l.key < r.key; };
  std::sort(x.begin(), x.end(), less);
  std::sort(b.begin(), b.end(), less);
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].key != b[i].key || x[i].weight != b[i].weight) return false;
  }
  return true;
}

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

uint32_t SnapshotBuilder::idFor(const IpAddr& addr, uint16_t port) {
  if (auto it = index_.find({addr, port}); it != index_.end()) return registry_[it->second].id;
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<uint32_t>(registry_.size());
    registry_.emplace_back();
  }
  Slot& s = registry_[index];
  s.addr = addr;
  s.port = port;
  s.used = true;
  s.tag = static_cast<uint8_t>(s.tag + 1);
  s.id = uint32_t{s.tag} << kBackendIndexBits | index;
  index_[{addr, port}] = index;
  return s.id;
}

const ServiceRuntime* SnapshotBuilder::lastService(const ServiceSpec& s) const {
  if (!last_) return nullptr;
  const int i = last_->findService(s.vip, s.port, s.proto);
  return i < 0 ? nullptr : &last_->services[static_cast<size_t>(i)];
}

Result<std::shared_ptr<const Snapshot>> SnapshotBuilder::build(const DesiredState& desired,
                                                               const SnatConfig& snat,
                                                               std::vector<std::string>* warnings,
                                                               uint64_t now_ms) {
  auto next = std::make_shared<Snapshot>();
  next->generation = desired.generation;
  next->snat = snat;
  if (snat.port_min == 0 || snat.port_min > snat.port_max) {
    return Status::error("SNAT port range " + std::to_string(snat.port_min) + "-" +
                         std::to_string(snat.port_max) + " is empty or starts at 0");
  }

  // Validate first: a rejected state must leave the registry untouched.
  std::map<std::tuple<IpAddr, uint16_t, uint8_t>, std::string> seen;
  for (const ServiceSpec& s : desired.services) {
    if (s.proto != kProtoTCP && s.proto != kProtoUDP) {
      return Status::error(where(s) + ": protocol must be TCP or UDP");
    }
    if (s.port == 0) return Status::error(where(s) + ": port must not be 0");
    auto [it, fresh] = seen.emplace(std::make_tuple(s.vip, s.port, s.proto), s.name);
    if (!fresh)
      return Status::error(where(s) + ": same VIP, port and protocol as '" + it->second + "'");
    if (s.mode == ForwardingMode::kNat && !(s.vip.isV4() ? snat.has_v4 : snat.has_v6)) {
      return Status::error(where(s) + ": NAT mode needs a source NAT address of the VIP's family");
    }
    if (s.maglev_size < 3 || s.maglev_size > kMaxMaglevSize || !isPrime(s.maglev_size)) {
      return Status::error(where(s) + ": Maglev table size " + std::to_string(s.maglev_size) +
                           " must be a prime between 3 and " + std::to_string(kMaxMaglevSize));
    }
    if (s.backends.size() >= s.maglev_size) {
      return Status::error(where(s) + ": " + std::to_string(s.backends.size()) +
                           " backends do not fit a Maglev table of " +
                           std::to_string(s.maglev_size) + " slots");
    }
    std::set<std::string> keys;
    for (const BackendSpec& b : s.backends) {
      if (!keys.insert(b.key()).second) {
        return Status::error(where(s) + ": backend " + b.key() + " is listed twice");
      }
      if (b.addr.isV4() != s.vip.isV4()) {
        return Status::error(where(s) + ": backend " + b.addr.toString() +
                             " is not of the VIP's address family");
      }
      if (b.port == 0)
        return Status::error(where(s) + ": backend " + b.addr.toString() + " has port 0");
      if (s.mode == ForwardingMode::kDsr && b.port != s.port) {
        return Status::error(where(s) + ": in DSR mode backend " + b.key() +
                             " must listen on the service port " + std::to_string(s.port));
      }
    }
  }

  std::vector<BackendRuntime> backends;
  std::vector<bool> referenced(registry_.size(), false);
  std::map<std::string, uint64_t> draining_since;
  std::set<std::string> drained;
  uint64_t next_deadline = UINT64_MAX;
  for (const ServiceSpec& s : desired.services) {
    ServiceRuntime rt;
    rt.spec = s;
    rt.timeouts = defaults_;
    if (s.idle_timeout_s != 0) {
      rt.timeouts.established_ms = clampMs(s.idle_timeout_s);
      rt.timeouts.udp_ms = clampMs(s.idle_timeout_s);
    }
    std::vector<MaglevBackend> mb;
    std::map<std::string, uint32_t> id_by_key;
    for (const BackendSpec& b : s.backends) {
      if (b.state == BackendState::kDraining && s.drain_timeout_s > 0) {
        const std::string dk = s.name + "|" + b.key();
        auto known = draining_since_ms_.find(dk);
        const uint64_t since = known != draining_since_ms_.end() ? known->second : now_ms;
        draining_since[dk] = since;
        const uint64_t deadline = since + uint64_t{s.drain_timeout_s} * 1000;
        if (now_ms >= deadline) {  // drained: its remaining flows go elsewhere
          if (warnings && !drained_.count(dk)) {
            warnings->push_back(where(s) + ": backend " + b.key() + " finished draining");
          }
          drained.insert(dk);
          continue;
        }
        next_deadline = std::min(next_deadline, deadline);
      }
      const uint32_t weight = b.state == BackendState::kDraining ? 0 : b.weight;
      mb.push_back({b.key(), weight});
      const uint32_t id = idFor(b.addr, b.port);
      id_by_key[b.key()] = id;
      const uint32_t index = id & kBackendIndexMask;
      if (index >= backends.size()) backends.resize(index + 1);
      if (index >= referenced.size()) referenced.resize(index + 1, false);
      referenced[index] = true;
      BackendRuntime& br = backends[index];
      // A backend shared by services is ACTIVE if any of them has it active.
      const bool was_present = br.present;
      br = BackendRuntime{
          id, b.addr, b.port,
          was_present && br.state == BackendState::kActive ? BackendState::kActive : b.state, true};
    }
    // A service whose Maglev inputs did not change keeps its table: with
    // thousands of services an update touches a few, and building every
    // table again would take seconds and double the memory.
    if (const ServiceRuntime* p = last_ ? lastService(s) : nullptr;
        p && p->spec.maglev_size == s.maglev_size && p->spec.hash_seed == s.hash_seed &&
        sameMembers(p->table->backends(), mb)) {
      rt.table = p->table;
    } else {
      std::string warning;
      auto table = MaglevTable::build(std::move(mb), s.maglev_size, s.hash_seed, &warning);
      if (!table) {
        return Status::error(where(s) + ": " + table.error());
      }
      if (!warning.empty() && warnings) warnings->push_back(where(s) + ": " + warning);
      rt.table = std::make_shared<const MaglevTable>(std::move(*table));
    }
    for (const auto& b : rt.table->backends()) rt.ids.push_back(id_by_key[b.key]);
    // The previous generation's table of the same service (same VIP:port:proto).
    if (last_) {
      if (const ServiceRuntime* prev = lastService(s)) {
        const ServiceRuntime& p = *prev;
        if (p.table->fingerprint() == rt.table->fingerprint()) {
          rt.prev_table = p.prev_table;  // unchanged: keep the older generation
          rt.prev_ids = p.prev_ids;
        } else {
          rt.prev_table = p.table;
          rt.prev_ids = p.ids;
        }
      }
    }
    next->services.push_back(std::move(rt));
  }
  // Ids no longer referenced go back to the pool; their tag changes on reuse.
  for (size_t i = 0; i < registry_.size(); ++i) {
    if (registry_[i].used && (i >= referenced.size() || !referenced[i])) {
      registry_[i].used = false;
      index_.erase({registry_[i].addr, registry_[i].port});
      free_.push_back(static_cast<uint32_t>(i));
    }
  }
  next->backends = std::move(backends);
  next->buildIndex();
  last_ = next;
  draining_since_ms_ = std::move(draining_since);
  drained_ = std::move(drained);
  next_drain_deadline_ms_ = next_deadline;
  return std::shared_ptr<const Snapshot>(next);
}

}  // namespace flowlb::agent
