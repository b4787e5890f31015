// The Kubernetes API as the reconcile loop's object source: six informers
// (Services, EndpointSlices, Nodes, IPPools, BGPPeers, BGPAdvertisements)
// and one on the basic-auth Secrets of the controller's namespace (BGPPeer
// passwords), whose changes become the loop's change notifications.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "controller/k8s/api_client.h"
#include "controller/k8s/informer.h"
#include "controller/loop/reconcile_loop.h"

namespace flowlb::controller::k8s {

struct KubeSourceOptions {
  int watch_timeout_min_s = 300;
  int watch_timeout_max_s = 600;
  std::chrono::milliseconds backoff_initial{200};
  std::chrono::milliseconds backoff_max{30000};
  Watchdog* watchdog = nullptr;  // each informer beats it
  // Where BGPPeer password Secrets live (the controller's namespace); only
  // Secrets of type kubernetes.io/basic-auth there are read.
  std::string secret_namespace = "flowlb-system";
};

struct KubeSourceCallbacks {
  std::function<void(const std::string& key)> service_changed;
  std::function<void(const std::string& service_key)> slices_changed;
  std::function<void()> everything_changed;  // Nodes, pools, a re-list
  std::function<void()> services_relisted;   // the server's list is what holds now
  // A BGPPeer or BGPAdvertisement read: `why` it was refused, or "" (fine).
  std::function<void(const std::string& kind, const std::string& name, const std::string& uid,
                     const std::string& why)>
      bgp_object_decoded;
};

class KubeSource final : public ObjectSource {
 public:
  KubeSource(ApiClient* api, KubeSourceOptions options, KubeSourceCallbacks callbacks);
  ~KubeSource() override;
  void start();
  void stop();

  bool synced() const override;
  std::vector<ServicePtr> services() const override;
  std::optional<ServiceObject> service(const std::string& key) const override;
  std::vector<SlicePtr> slices() const override;
  std::vector<EndpointSliceObject> slicesOf(const std::string& service_key) const override;
  std::vector<NodeObject> nodes() const override;
  std::vector<IpPool> pools() const override;
  uint64_t version() const override;
  std::vector<BgpPeerSpec> bgpPeers() const override;
  std::vector<BgpAdvertisementSpec> bgpAdvertisements() const override;
  std::optional<SecretObject> secret(const std::string& name) const override;
  std::optional<PoolObject> pool(const std::string& name) const;

 private:
  InformerOptions informerOptions(const std::string& resource, const std::string& path) const;
  KubeSourceOptions opt_;
  KubeSourceCallbacks cb_;
  std::unique_ptr<Informer<ServiceObject>> services_;
  std::unique_ptr<Informer<EndpointSliceObject>> slices_;
  std::unique_ptr<Informer<NodeEntry>> nodes_;
  std::unique_ptr<Informer<PoolObject>> pools_;
  std::unique_ptr<Informer<BgpPeerSpec>> bgp_peers_;
  std::unique_ptr<Informer<BgpAdvertisementSpec>> bgp_ads_;
  std::unique_ptr<Informer<SecretObject>> secrets_;
};

}  // namespace flowlb::controller::k8s
