// YAML text to Doc trees (the directory source's edge). Plain scalars are
// typed as the YAML 1.2 core schema types them (null, booleans, integers,
// floats, strings), so a directory file and the JSON an API server sends for
// the same object give the same tree; quoted scalars are always strings.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "controller/decode/doc.h"

namespace flowlb::controller {

// Every document of a (multi-document) YAML or JSON text; null documents
// are left out. A syntax error fails the whole text; `error_line` (if
// given) gets its 1-based line.
Result<std::vector<Doc>> parseYamlDocuments(const std::string& text, int* error_line = nullptr);

}  // namespace flowlb::controller
