#include "controller/k8s/kube_source.h"

#include <algorithm>

#include "controller/k8s/encode.h"

namespace flowlb::controller::k8s {

InformerOptions KubeSource::informerOptions(const std::string& resource,
                                            const std::string& path) const {
  InformerOptions io;
  io.resource = resource;
  io.path = path;
  io.watch_timeout_min_s = opt_.watch_timeout_min_s;
  io.watch_timeout_max_s = opt_.watch_timeout_max_s;
  io.backoff_initial = opt_.backoff_initial;
  io.backoff_max = opt_.backoff_max;
  io.watchdog = opt_.watchdog;
  if (io.watchdog) {
    // A watch may be silent for its whole timeout plus the read timeout
    // (30 s) before the thread notices; more than that is a hang.
    io.watchdog->expect("informer/" + resource,
                        std::chrono::seconds(opt_.watch_timeout_max_s + 30 + 60));
  }
  return io;
}

KubeSource::KubeSource(ApiClient* api, KubeSourceOptions options, KubeSourceCallbacks callbacks)
    : opt_(std::move(options)), cb_(std::move(callbacks)) {
  auto everything = [this](const std::string&, const std::string&, const std::string&) {
    if (cb_.everything_changed) cb_.everything_changed();
  };
  services_ = std::make_unique<Informer<ServiceObject>>(
      api, informerOptions("services", "/api/v1/services"), decodeService,
      [](const ServiceObject& s) { return s.meta.key(); }, nullptr,
      [this](const std::string& key, const std::string&, const std::string&) {
        if (key.empty()) {  // re-listed
          if (cb_.services_relisted) cb_.services_relisted();
          if (cb_.everything_changed) cb_.everything_changed();
        } else if (cb_.service_changed) {
          cb_.service_changed(key);
        }
      });
  slices_ = std::make_unique<Informer<EndpointSliceObject>>(
      api, informerOptions("endpointslices", "/apis/discovery.k8s.io/v1/endpointslices"),
      decodeEndpointSlice, [](const EndpointSliceObject& e) { return e.meta.key(); },
      [](const EndpointSliceObject& e) { return e.serviceKey(); },
      [this](const std::string& key, const std::string& before, const std::string& after) {
        if (key.empty()) {
          if (cb_.everything_changed) cb_.everything_changed();
          return;
        }
        // The Service(s) the EndpointSlice belonged to and belongs to.
        if (!cb_.slices_changed) return;
        if (!before.empty()) cb_.slices_changed(before);
        if (!after.empty() && after != before) cb_.slices_changed(after);
      });
  nodes_ = std::make_unique<Informer<NodeEntry>>(
      api, informerOptions("nodes", "/api/v1/nodes"), decodeNode,
      [](const NodeEntry& n) { return n.node.name; }, nullptr, everything);
  pools_ = std::make_unique<Informer<PoolObject>>(
      api, informerOptions("ippools", "/apis/flowlb.io/v1alpha1/ippools"), decodePool,
      [](const PoolObject& p) { return p.pool.name; }, nullptr, everything);
  auto told = [this](const char* kind) {
    return [this, kind](const web::json::value& obj, const std::string& why) {
      if (!cb_.bgp_object_decoded) return;
      const Result<ObjectMeta> m = decodeMeta(obj, false);
      if (m && !m->name.empty()) cb_.bgp_object_decoded(kind, m->name, m->uid, why);
    };
  };
  InformerOptions peers = informerOptions("bgppeers", "/apis/flowlb.io/v1alpha1/bgppeers");
  peers.on_decoded = told("BGPPeer");
  bgp_peers_ = std::make_unique<Informer<BgpPeerSpec>>(
      api, peers, decodeBgpPeer, [](const BgpPeerSpec& p) { return p.name; }, nullptr, everything);
  InformerOptions ads =
      informerOptions("bgpadvertisements", "/apis/flowlb.io/v1alpha1/bgpadvertisements");
  ads.on_decoded = told("BGPAdvertisement");
  bgp_ads_ = std::make_unique<Informer<BgpAdvertisementSpec>>(
      api, ads, decodeBgpAdvertisement, [](const BgpAdvertisementSpec& a) { return a.route.name; },
      nullptr, everything);
  secrets_ = std::make_unique<Informer<SecretObject>>(
      api,
      informerOptions("secrets", "/api/v1/namespaces/" + pathSegment(opt_.secret_namespace) +
                                     "/secrets?fieldSelector=type%3Dkubernetes.io%2Fbasic-auth"),
      decodeSecret, [](const SecretObject& s) { return s.meta.name; }, nullptr, everything);
}

KubeSource::~KubeSource() {
  stop();
}

void KubeSource::start() {
  services_->start();
  slices_->start();
  nodes_->start();
  pools_->start();
  bgp_peers_->start();
  bgp_ads_->start();
  secrets_->start();
}

void KubeSource::stop() {
  services_->stop();
  slices_->stop();
  nodes_->stop();
  pools_->stop();
  bgp_peers_->stop();
  bgp_ads_->stop();
  secrets_->stop();
}

bool KubeSource::synced() const {
  return services_->synced() && slices_->synced() && nodes_->synced() && pools_->synced() &&
         bgp_peers_->synced() && bgp_ads_->synced() && secrets_->synced();
}

std::vector<ServicePtr> KubeSource::services() const {
  return services_->snapshot();
}

std::optional<ServiceObject> KubeSource::service(const std::string& key) const {
  return services_->get(key);
}

std::vector<SlicePtr> KubeSource::slices() const {
  return slices_->snapshot();
}

std::vector<EndpointSliceObject> KubeSource::slicesOf(const std::string& service_key) const {
  return slices_->byIndex(service_key);
}

std::vector<NodeObject> KubeSource::nodes() const {
  std::vector<NodeObject> out;
  for (NodeEntry& n : nodes_->list()) out.push_back(std::move(n.node));
  return out;
}

std::vector<IpPool> KubeSource::pools() const {
  std::vector<IpPool> out;
  for (PoolObject& p : pools_->list()) out.push_back(std::move(p.pool));
  return out;
}

std::vector<BgpPeerSpec> KubeSource::bgpPeers() const {
  return bgp_peers_->list();
}

std::vector<BgpAdvertisementSpec> KubeSource::bgpAdvertisements() const {
  return bgp_ads_->list();
}

std::optional<SecretObject> KubeSource::secret(const std::string& name) const {
  std::optional<SecretObject> s = secrets_->get(name);
  if (s && s->type != "kubernetes.io/basic-auth") return std::nullopt;  // the selector's promise
  return s;
}

std::optional<PoolObject> KubeSource::pool(const std::string& name) const {
  return pools_->get(name);
}

uint64_t KubeSource::version() const {
  return std::max({services_->lastEventVersion(), slices_->lastEventVersion(),
                   nodes_->lastEventVersion(), pools_->lastEventVersion(),
                   bgp_peers_->lastEventVersion(), bgp_ads_->lastEventVersion(),
                   secrets_->lastEventVersion()});
}

}  // namespace flowlb::controller::k8s
