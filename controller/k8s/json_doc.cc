#include "controller/k8s/json_doc.h"

namespace flowlb::controller::k8s {

Doc toDoc(const web::json::value& v) {
  using web::json::value;
  switch (v.type()) {
    case value::Null: return Doc::null();
    case value::Boolean: return Doc::boolean(v.as_bool());
    case value::Number:
      if (v.is_integer()) return Doc::integer(v.as_number().to_int64());
      return Doc::real(v.as_double());
    case value::String: return Doc::string(v.as_string());
    case value::Array: {
      Doc d = Doc::list();
      for (const value& x : v.as_array()) d.push(toDoc(x));
      return d;
    }
    case value::Object: {
      Doc d = Doc::map();
      for (const auto& [k, x] : v.as_object()) d.set(k, toDoc(x));
      return d;
    }
  }
  return Doc::null();
}

}  // namespace flowlb::controller::k8s
