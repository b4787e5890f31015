// The standalone source: Services, EndpointSlices, Nodes and IPPools read
// from a directory of ordinary Kubernetes YAML (or JSON) instead of the API
// server, for use without Kubernetes, the demo and tests. The documents go
// through the same decoder as the API's JSON (controller/decode/).
//
// Bad input never costs what was good: a file whose text does not parse
// keeps the objects it gave last time, and an object that does not decode
// keeps its last good version (as the API source's cache does); both are
// reported. Only deleting a file (or an object from a file that parses)
// removes objects. Allocations are persisted in a status file, read back on
// start, as a cluster keeps them in Service status.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "controller/decode/decode.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

struct SourceSnapshot {
  std::vector<ServiceObject> services;
  std::vector<EndpointSliceObject> slices;
  std::vector<NodeObject> nodes;
  std::vector<IpPool> pools;
  std::vector<BgpPeerSpec> bgp_peers;
  std::vector<BgpAdvertisementSpec> bgp_advertisements;
  std::vector<SecretObject> secrets;  // by name, whatever their namespace
  // "file:line: Kind/name: what is wrong", one per problem still present.
  std::vector<std::string> problems;
  bool operator==(const SourceSnapshot&) const = default;
};

// What changed between two snapshots, in the terms the reconcile loop uses.
struct SourceChanges {
  std::vector<std::string> services;  // keys of Services added, changed or removed
  std::vector<std::string> slices;    // owning Service keys of EndpointSlices that changed
  bool others = false;  // Nodes, IPPools, BGPPeers or BGPAdvertisements changed: a full reconcile
  bool empty() const { return services.empty() && slices.empty() && !others; }
};
SourceChanges diffSnapshots(const SourceSnapshot& before, const SourceSnapshot& after);

class DirSource {
 public:
  explicit DirSource(std::string dir) : dir_(std::move(dir)) {}
  // Reads every *.yaml, *.yml and *.json file again (multi-document YAML
  // allowed). Fails only when the directory itself cannot be read.
  Status refresh();
  const SourceSnapshot& snapshot() const { return merged_; }
  const std::string& dir() const { return dir_; }

 private:
  // One file's objects as it last gave them.
  struct FileObjects {
    std::string text;
    SourceSnapshot objects;  // problems: this file's
  };
  FileObjects parse(const std::string& file, const std::string& text,
                    const FileObjects* before) const;

  std::string dir_;
  std::map<std::string, FileObjects> files_;  // by file name
  SourceSnapshot merged_;
};

// Parses one file's text into `out` (no memory of earlier versions; for
// tests and one-shot reads).
void parseDocuments(const std::string& text, const std::string& file, SourceSnapshot* out);

// The allocations of the directory source: status.loadBalancer.ingress of
// each Service, as the controller last wrote it.
class StatusFile {
 public:
  // A missing file is empty. A file that exists but cannot be read or
  // parsed is an error: starting anyway would overwrite the allocations in
  // it with new ones, so the caller stops instead.
  static Result<StatusFile> load(const std::string& path);
  // Fills status.ips of the Services whose object carries none.
  void overlay(std::vector<ServiceObject>* services) const;
  void overlay(ServiceObject* s) const;
  // Whether overlay() would change `s`.
  bool fills(const ServiceObject& s) const {
    return s.status.ips.empty() && ips_.count(s.meta.key()) != 0;
  }
  // Keeps what this reconcile allocated and writes the file atomically.
  Status save(const Reconciled& r);
  size_t size() const { return ips_.size(); }

 private:
  std::string path_;
  std::map<std::string, std::vector<IpAddr>> ips_;  // by Service key
};

}  // namespace flowlb::controller
