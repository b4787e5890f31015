// A parsed JSON or YAML document, as the object decoder reads it. Each
// source converts its format into this tree at its edge (the API client's
// JSON in controller/k8s/, the directory's YAML in controller/source/), so
// one decoder maps Kubernetes objects whatever they came from, and the two
// sources cannot drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flowlb::controller {

class Doc {
 public:
  enum class Kind : uint8_t { kNull, kBool, kInt, kFloat, kString, kList, kMap };

  Doc() = default;
  static Doc null(int line = 0) { return Doc(Kind::kNull, line); }
  static Doc boolean(bool v, int line = 0) {
    Doc d(Kind::kBool, line);
    d.int_ = v ? 1 : 0;
    return d;
  }
  static Doc integer(int64_t v, int line = 0) {
    Doc d(Kind::kInt, line);
    d.int_ = v;
    return d;
  }
  static Doc real(double v, int line = 0) {
    Doc d(Kind::kFloat, line);
    d.float_ = v;
    return d;
  }
  static Doc string(std::string v, int line = 0) {
    Doc d(Kind::kString, line);
    d.string_ = std::move(v);
    return d;
  }
  static Doc list(int line = 0) { return Doc(Kind::kList, line); }
  static Doc map(int line = 0) { return Doc(Kind::kMap, line); }

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::kNull; }
  bool isString() const { return kind_ == Kind::kString; }
  bool isList() const { return kind_ == Kind::kList; }
  bool isMap() const { return kind_ == Kind::kMap; }
  // 1-based line in the source text; 0 when the source has no lines (JSON
  // from the API server).
  int line() const { return line_; }

  bool asBool() const { return int_ != 0; }
  int64_t asInt() const { return int_; }
  double asFloat() const { return float_; }
  const std::string& asString() const { return string_; }
  const std::vector<Doc>& items() const { return items_; }
  const std::vector<std::pair<std::string, Doc>>& fields() const { return fields_; }

  // The member `key` of a map; nullptr when this is not a map, the key is
  // missing or its value is null (Kubernetes treats the three alike).
  const Doc* get(std::string_view key) const {
    if (kind_ != Kind::kMap) return nullptr;
    for (const auto& [k, v] : fields_) {
      if (k == key) return v.isNull() ? nullptr : &v;
    }
    return nullptr;
  }
  const Doc* path(std::initializer_list<std::string_view> keys) const {
    const Doc* cur = this;
    for (std::string_view k : keys) {
      cur = cur->get(k);
      if (!cur) return nullptr;
    }
    return cur;
  }

  void push(Doc item) { items_.push_back(std::move(item)); }
  void set(std::string key, Doc value) { fields_.emplace_back(std::move(key), std::move(value)); }

 private:
  Doc(Kind k, int line) : kind_(k), line_(line) {}
  Kind kind_ = Kind::kNull;
  int line_ = 0;
  int64_t int_ = 0;
  double float_ = 0;
  std::string string_;
  std::vector<Doc> items_;
  std::vector<std::pair<std::string, Doc>> fields_;
};

}  // namespace flowlb::controller
