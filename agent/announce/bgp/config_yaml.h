// The `bgp:` section of the standalone agent file (examples/agent-standalone.yaml
// documents every field) to BgpSettings. Errors name the line and the field.
#pragma once

#include <yaml-cpp/yaml.h>

#include "agent/announce/bgp/config.h"
#include "common/status.h"

namespace flowlb::agent::bgp {

Result<BgpSettings> parseBgpYaml(const YAML::Node& section);

}  // namespace flowlb::agent::bgp
