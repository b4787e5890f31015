#include "controller/source/yaml_doc.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <regex>

namespace flowlb::controller {
namespace {

// The YAML 1.2 core schema's resolution of a plain scalar.
Doc plainScalar(const std::string& s, int line) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return Doc::null(line);
  if (s == "true" || s == "True" || s == "TRUE") return Doc::boolean(true, line);
  if (s == "false" || s == "False" || s == "FALSE") return Doc::boolean(false, line);
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kOct("0o[0-7]+");
  static const std::regex kHex("0x[0-9a-fA-F]+");
  static const std::regex kFloat(
      "[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|"
      "NAN)");
  errno = 0;
  if (std::regex_match(s, kInt)) {
    const long long v = std::strtoll(s.c_str(), nullptr, 10);
    if (errno == 0) return Doc::integer(v, line);
  } else if (std::regex_match(s, kOct)) {
    return Doc::integer(std::strtoll(s.c_str() + 2, nullptr, 8), line);
  } else if (std::regex_match(s, kHex)) {
    return Doc::integer(std::strtoll(s.c_str() + 2, nullptr, 16), line);
  } else if (std::regex_match(s, kFloat)) {
    return Doc::real(std::strtod(s.c_str(), nullptr), line);
  }
  return Doc::string(s, line);
}

Doc convert(const YAML::Node& n) {
  const int line = n.Mark().line + 1;
  switch (n.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: return Doc::null(line);
    case YAML::NodeType::Scalar:
      // "!" is the tag of a quoted scalar: always a string.
      return n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str" ? Doc::string(n.Scalar(), line)
                                                                  : plainScalar(n.Scalar(), line);
    case YAML::NodeType::Sequence: {
      Doc d = Doc::list(line);
      for (const auto& x : n) d.push(convert(x));
      return d;
    }
    case YAML::NodeType::Map: {
      Doc d = Doc::map(line);
      for (const auto& kv : n) d.set(kv.first.Scalar(), convert(kv.second));
      return d;
    }
  }
  return Doc::null(line);
}

}  // namespace

Result<std::vector<Doc>> parseYamlDocuments(const std::string& text, int* error_line) {
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    if (error_line) *error_line = e.mark.line + 1;
    return Status::error(e.msg);
  }
  std::vector<Doc> out;
  for (const YAML::Node& d : docs) {
    if (!d || d.IsNull()) continue;
    out.push_back(convert(d));
  }
  return out;
}

}  // namespace flowlb::controller
