// The field readers every decoder in controller/decode/ shares (internal):
// each reads one member of a Doc and throws Bad, with the field's name and
// line, when it is not what Kubernetes allows; guarded() turns that into
// the DecodeProblem the caller reports.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/ip_addr.h"
#include "controller/decode/decode.h"
#include "controller/decode/doc.h"

namespace flowlb::controller::decode_fields {

// Thrown by the field readers below; decode*() turn it into a DecodeProblem.
struct Bad {
  std::string what;
  int line;
};

[[noreturn]] inline void bad(const Doc& at, std::string what) {
  throw Bad{std::move(what), at.line()};
}

inline std::string str(const Doc* v, const std::string& what) {
  if (!v) return "";
  if (!v->isString()) bad(*v, what + " must be a string");
  return v->asString();
}

inline bool boolean(const Doc* v, const std::string& what, bool fallback) {
  if (!v) return fallback;
  if (v->kind() != Doc::Kind::kBool) bad(*v, what + " must be true or false");
  return v->asBool();
}

inline int64_t integer(const Doc* v, const std::string& what, int64_t min, int64_t max) {
  if (!v) return 0;
  if (v->kind() != Doc::Kind::kInt) bad(*v, what + " must be an integer");
  const int64_t x = v->asInt();
  if (x < min || x > max) {
    bad(*v, what + " must be in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return x;
}

inline const std::vector<Doc>& list(const Doc* v, const std::string& what) {
  static const std::vector<Doc> kEmpty;
  if (!v) return kEmpty;
  if (!v->isList()) bad(*v, what + " must be a list");
  return v->items();
}

inline std::map<std::string, std::string> stringMap(const Doc* v, const std::string& what) {
  std::map<std::string, std::string> out;
  if (!v) return out;
  if (!v->isMap()) bad(*v, what + " must be a mapping");
  for (const auto& [k, x] : v->fields()) {
    if (x.isNull()) continue;
    out[k] = str(&x, what + "." + k);
  }
  return out;
}

inline IpAddr address(const Doc* v, const std::string& what) {
  auto a = IpAddr::parse(str(v, what));
  if (!a) bad(*v, what + ": " + a.error());
  return *a;
}

// metadata, checked (decode.cc).
ObjectMeta meta(const Doc& obj, bool namespaced);

template <typename T, typename F>
Decoded<T> guarded(F&& f) {
  Decoded<T> out;
  try {
    out.value = f();
    out.ok = true;
  } catch (const Bad& b) {
    out.problem = {b.what, b.line};
  }
  return out;
}

}  // namespace flowlb::controller::decode_fields
