// Standalone configuration: virtual services and this node's SNAT settings
// read from a YAML (or JSON, which is YAML) file and converted to the same
// DesiredState the gRPC path fills. Errors name the line and the field.
#pragma once

#include <string>

#include "agent/announce/bgp/config.h"
#include "agent/lb/service.h"
#include "common/status.h"

namespace flowlb::agent {

struct AgentConfigFile {
  DesiredState desired;
  SnatConfig snat;
  // Interfaces on which this node answers ARP/NDP for every VIP of the file
  // (standalone L2 announcement); empty: announce nothing.
  std::vector<std::string> announce_interfaces;
  // BGP announcement (the `bgp:` section, agent/announce/bgp/config_yaml.cc);
  // no peers: none.
  bgp::BgpSettings bgp;
  // Services left out because their healthCheck is invalid (each names the
  // field); the rest of the file applies.
  std::vector<ServiceError> refused;
};

Result<AgentConfigFile> parseAgentConfig(const std::string& text);
Result<AgentConfigFile> loadAgentConfig(const std::string& path);

}  // namespace flowlb::agent
