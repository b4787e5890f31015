#include "controller/bgp/bgp_config.h"

#include <algorithm>

namespace flowlb::controller {

bool matchesLabels(const Labels& selector, const Labels& labels) {
  for (const auto& [k, v] : selector) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

bool BgpAdvertisementSpec::selects(const std::string& pool, const Labels& pool_labels) const {
  if (pools.empty() && pool_selector.empty()) return true;
  if (std::find(pools.begin(), pools.end(), pool) != pools.end()) return true;
  return !pool_selector.empty() && matchesLabels(pool_selector, pool_labels);
}

const std::vector<BgpPeerSpec>* BgpDesired::peersOf(const std::string& node) const {
  auto it = peers_by_node.find(node);
  return it == peers_by_node.end() ? nullptr : &it->second;
}

const std::vector<BgpRouteSpec>* BgpDesired::routesOf(const IpAddr& vip) const {
  auto it = vips.find(vip);
  return it == vips.end() ? nullptr : &it->second;
}

BgpDesired planBgp(const std::vector<BgpPeerSpec>& peers,
                   const std::vector<BgpAdvertisementSpec>& advertisements,
                   const std::vector<BgpPool>& pools, const std::vector<BgpNode>& nodes,
                   const std::vector<BgpVip>& vips) {
  BgpDesired out;
  out.configured = !peers.empty() || !advertisements.empty();
  std::vector<const BgpPeerSpec*> sorted_peers;
  for (const BgpPeerSpec& p : peers) sorted_peers.push_back(&p);
  std::sort(sorted_peers.begin(), sorted_peers.end(),
            [](const BgpPeerSpec* a, const BgpPeerSpec* b) { return a->name < b->name; });
  for (const BgpNode& n : nodes) {
    std::vector<BgpPeerSpec> mine;
    for (const BgpPeerSpec* p : sorted_peers) {
      if (matchesLabels(p->node_selector, n.labels)) mine.push_back(*p);
    }
    if (!mine.empty()) out.peers_by_node[n.name] = std::move(mine);
  }
  std::vector<const BgpAdvertisementSpec*> sorted_ads;
  for (const BgpAdvertisementSpec& a : advertisements) sorted_ads.push_back(&a);
  std::sort(sorted_ads.begin(), sorted_ads.end(),
            [](const BgpAdvertisementSpec* a, const BgpAdvertisementSpec* b) {
              return a->route.name < b->route.name;
            });
  std::map<std::string, std::vector<BgpRouteSpec>> by_pool;
  for (const BgpPool& pool : pools) {
    std::vector<BgpRouteSpec> routes;
    for (const BgpAdvertisementSpec* a : sorted_ads) {
      if (a->selects(pool.name, pool.labels)) routes.push_back(a->route);
    }
    if (!routes.empty()) by_pool[pool.name] = std::move(routes);
  }
  for (const BgpVip& v : vips) {
    auto it = by_pool.find(v.pool);
    if (it != by_pool.end()) out.vips[v.vip] = it->second;
  }
  return out;
}

}  // namespace flowlb::controller
