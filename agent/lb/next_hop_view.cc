#include "agent/lb/next_hop_view.h"

#include <algorithm>

#include "common/hash.h"

namespace flowlb::agent {

size_t IpAddrHash::operator()(const IpAddr& a) const {
  return hashBytes(a.bytes.data(), 16, 0);
}

const NextHopView::Route* NextHopView::route(const IpAddr& dst) const {
  for (const Route& r : routes) {
    if (r.prefix.contains(dst)) return &r;
  }
  return nullptr;
}

NextHopView::Answer NextHopView::resolve(const IpAddr& dst) const {
  Answer a;
  if (local.find(dst) != local.end()) {
    a.hop = &kernel_hop;
    return a;
  }
  const Route* r = route(dst);
  if (r == nullptr) return a;
  if (std::find(attached.begin(), attached.end(), r->ifindex) == attached.end()) {
    a.hop = &kernel_hop;  // a pod's veth, an overlay, any device we do not own
    return a;
  }
  a.miss_ifindex = r->ifindex;
  if (r->gateway) {
    a.hop = &r->via;
    a.miss = !r->via.resolved;
    a.miss_addr = r->gateway_addr;
    return a;
  }
  a.miss_addr = dst;
  auto per_if = neighbors.find(r->ifindex);
  if (per_if != neighbors.end()) {
    auto it = per_if->second.find(dst);
    if (it != per_if->second.end()) {
      a.hop = &it->second;
      a.miss = !it->second.resolved;
      return a;
    }
  }
  a.miss = true;
  auto u = unresolved.find(r->ifindex);
  a.hop = u != unresolved.end() ? &u->second : nullptr;
  return a;
}

void NextHopView::precompute(const std::vector<IpAddr>& dsts) {
  precomputed_.clear();
  precomputed_.reserve(dsts.size());
  for (const IpAddr& d : dsts) precomputed_[d] = resolve(d);
}

}  // namespace flowlb::agent
