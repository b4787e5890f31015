#include "controller/grpc/hello.h"

namespace flowlb::controller {

bool validNodeName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    if (!alnum && c != '-') return false;
    if (label == 0 && c == '-') return false;
    if (++label > 63) return false;
  }
  return label > 0 && name.back() != '-';
}

Status checkHello(const flowlb::v1::Hello& hello, const grpc::AuthContext* /*auth*/) {
  if (!validNodeName(hello.node_name())) {
    // Raw (bounded): whoever logs it escapes it.
    return Status::error("Hello.node_name \"" + hello.node_name().substr(0, 64) +
                         "\" is not a Kubernetes node name (lowercase letters, digits, '-' and "
                         "'.', at most 253 characters)");
  }
  return Status::ok();
}

}  // namespace flowlb::controller
