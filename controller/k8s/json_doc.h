// The API server's JSON (cpprestsdk values) to Doc trees: the Kubernetes
// source's edge before the shared object decoder.
#pragma once

#include <cpprest/json.h>

#include "controller/decode/doc.h"

namespace flowlb::controller::k8s {

Doc toDoc(const web::json::value& v);

}  // namespace flowlb::controller::k8s
