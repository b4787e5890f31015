// The standalone source: Services, EndpointSlices, Nodes and IPPools read
// from a directory of ordinary Kubernetes YAML (or JSON) instead of the API
// server, for use without Kubernetes, the demo and tests. Allocations are
// persisted in a status file, read back on start, as a cluster keeps them
// in Service status.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "controller/reconciler/reconciler.h"

namespace flowlb::controller {

struct SourceSnapshot {
  std::vector<ServiceObject> services;
  std::vector<EndpointSliceObject> slices;
  std::vector<NodeObject> nodes;
  std::vector<IpPool> pools;
  std::vector<std::string>
      problems;  // "file:line: Kind/name: what is wrong"; the object is skipped
};

// Reads every *.yaml, *.yml and *.json file in `dir` (multi-document YAML
// allowed). A document that cannot be understood is reported and skipped;
// the rest are used.
Result<SourceSnapshot> readDirectory(const std::string& dir);
// Parses one file's text (for tests and for readDirectory).
void parseDocuments(const std::string& text, const std::string& file, SourceSnapshot* out);

// status.loadBalancer.ingress of each Service, as the controller last wrote it.
Status writeStatusFile(const std::string& path, const Reconciled& r);
// Fills services[].status_ips from the file (missing file: nothing to do).
Status applyStatusFile(const std::string& path, std::vector<ServiceObject>* services);

}  // namespace flowlb::controller
