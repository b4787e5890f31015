#include "controller/source/dir_source.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/file.h"
#include "controller/source/yaml_doc.h"

namespace flowlb::controller {
namespace {

bool namespaced(const std::string& kind) {
  return kind == "Service" || kind == "EndpointSlice";
}

// The key (namespace/name, or name) of a document, from whatever of it is
// readable.
std::string identity(const Doc& doc, const std::string& kind) {
  const Doc* n = doc.path({"metadata", "name"});
  const std::string name = n && n->isString() ? n->asString() : "?";
  if (!namespaced(kind)) return name;
  const Doc* ns = doc.path({"metadata", "namespace"});
  return (ns && ns->isString() && !ns->asString().empty() ? ns->asString() : "default") + "/" +
         name;
}

template <typename T, typename Key>
const T* findByKey(const std::vector<T>& v, const std::string& key, Key key_of) {
  for (const T& x : v) {
    if (key_of(x) == key) return &x;
  }
  return nullptr;
}

std::string serviceKey(const ServiceObject& s) {
  return s.meta.key();
}
std::string sliceKey(const EndpointSliceObject& e) {
  return e.meta.key();
}
std::string nodeKey(const NodeObject& n) {
  return n.name;
}
std::string poolKey(const IpPool& p) {
  return p.name;
}
std::string bgpPeerKey(const BgpPeerSpec& p) {
  return p.name;
}
std::string bgpAdvertisementKey(const BgpAdvertisementSpec& a) {
  return a.route.name;
}

std::string secretKey(const SecretObject& s) {
  return s.meta.name;
}

// Adds one decoded document to `out`; when it does not decode, its last
// good version from `before` (if any) stands in, and the problem is noted.
void addDocument(const Doc& doc, const std::string& file, const SourceSnapshot* before,
                 SourceSnapshot* out) {
  const Doc* k = doc.get("kind");
  if (!doc.isMap() || !k || !k->isString()) {
    out->problems.push_back(file + ":" + std::to_string(doc.line()) +
                            ": not a Kubernetes object (no kind)");
    return;
  }
  const std::string kind = k->asString();
  const std::string id = identity(doc, kind);
  // "Service/web (namespace shop)", as kubectl names objects.
  const auto slash = id.find('/');
  const std::string named =
      slash == std::string::npos
          ? kind + "/" + id
          : kind + "/" + id.substr(slash + 1) + " (namespace " + id.substr(0, slash) + ")";
  // Decodes, or keeps the last good version of this object.
  auto take = [&](auto decoded, auto& into, const auto& previous, auto key_of, auto value_of) {
    if (decoded.ok) {
      into.push_back(value_of(std::move(decoded.value)));
      return;
    }
    const auto* old = before ? findByKey(previous, id, key_of) : nullptr;
    const DecodeProblem& p = decoded.problem;
    out->problems.push_back(file + ":" + std::to_string(p.line ? p.line : doc.line()) + ": " +
                            named + ": " + p.what +
                            (old ? " (its last good version stays in force)" : ""));
    if (old) into.push_back(*old);
  };
  static const SourceSnapshot kNone;
  const SourceSnapshot& prev = before ? *before : kNone;
  auto same = [](auto&& x) { return std::move(x); };
  if (kind == "Service") {
    take(decodeService(doc), out->services, prev.services, serviceKey, same);
  } else if (kind == "EndpointSlice") {
    take(decodeEndpointSlice(doc), out->slices, prev.slices, sliceKey, same);
  } else if (kind == "IPPool") {
    take(decodePool(doc), out->pools, prev.pools, poolKey,
         [](PoolObject&& p) { return std::move(p.pool); });
    // The pool stays without the entries it could not read; each is named.
    if (!out->pools.empty() && poolKey(out->pools.back()) == id) {
      for (const std::string& w : out->pools.back().invalid) {
        out->problems.push_back(file + ":" + std::to_string(doc.line()) + ": " + named +
                                ": address " + w + " (left out of the pool)");
      }
    }
  } else if (kind == "Node") {
    take(decodeNode(doc), out->nodes, prev.nodes, nodeKey,
         [](NodeEntry&& n) { return std::move(n.node); });
  } else if (kind == "BGPPeer") {
    take(decodeBgpPeer(doc), out->bgp_peers, prev.bgp_peers, bgpPeerKey, same);
  } else if (kind == "BGPAdvertisement") {
    take(decodeBgpAdvertisement(doc), out->bgp_advertisements, prev.bgp_advertisements,
         bgpAdvertisementKey, same);
  } else if (kind == "Secret") {  // BGPPeer passwords (spec.passwordSecretRef)
    take(decodeSecret(doc), out->secrets, prev.secrets, secretKey, same);
  }  // other kinds belong to someone else
}

template <typename T, typename Key>
void changedKeys(const std::vector<T>& a, const std::vector<T>& b, Key key_of,
                 std::set<std::string>* out) {
  std::map<std::string, const T*> before;
  for (const T& x : a) before[key_of(x)] = &x;
  for (const T& x : b) {
    auto it = before.find(key_of(x));
    if (it == before.end() || !(*it->second == x)) out->insert(key_of(x));
    if (it != before.end()) before.erase(it);
  }
  for (const auto& [k, x] : before) out->insert(k);
}

}  // namespace

void parseDocuments(const std::string& text, const std::string& file, SourceSnapshot* out) {
  int line = 0;
  auto docs = parseYamlDocuments(text, &line);
  if (!docs) {
    out->problems.push_back(file + ":" + std::to_string(line) + ": " + docs.error());
    return;
  }
  for (const Doc& doc : *docs) addDocument(doc, file, nullptr, out);
}

DirSource::FileObjects DirSource::parse(const std::string& file, const std::string& text,
                                        const FileObjects* before) const {
  FileObjects f;
  f.text = text;
  int line = 0;
  auto docs = parseYamlDocuments(text, &line);
  if (!docs) {
    // The whole file is unreadable: what it gave last time stays.
    if (before) f.objects = before->objects;
    f.objects.problems = {file + ":" + std::to_string(line) + ": " + docs.error() +
                          (before ? " (the objects it gave last time stay in force)" : "")};
    return f;
  }
  for (const Doc& doc : *docs) {
    addDocument(doc, file, before ? &before->objects : nullptr, &f.objects);
  }
  return f;
}

Status DirSource::refresh() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec)) return Status::error("no directory " + dir_);
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  if (ec) return Status::error("cannot list " + dir_ + ": " + ec.message());
  std::sort(names.begin(), names.end());
  std::map<std::string, FileObjects> next;
  for (const std::string& name : names) {
    auto before = files_.find(name);
    const FileObjects* prev = before == files_.end() ? nullptr : &before->second;
    auto text = readFile((fs::path(dir_) / name).string());
    if (!text) {
      // Unreadable right now (permissions, a race with its removal): keep it.
      FileObjects kept = prev ? *prev : FileObjects{};
      kept.objects.problems = {name + ": " + text.error()};
      next[name] = std::move(kept);
      continue;
    }
    if (prev && prev->text == *text) {
      next[name] = *prev;
      continue;
    }
    next[name] = parse(name, *text, prev);
  }
  files_ = std::move(next);

  // Merge, first file wins on a duplicate.
  SourceSnapshot m;
  std::set<std::string> seen;
  auto add = [&](const std::string& file, const std::string& kind, const std::string& key,
                 auto& into, const auto& x) {
    if (!seen.insert(kind + "|" + key).second) {
      m.problems.push_back(file + ": " + kind + "/" + key +
                           " is defined in an earlier file too; that one is used");
      return;
    }
    into.push_back(x);
  };
  for (const auto& [name, f] : files_) {
    for (const auto& s : f.objects.services) add(name, "Service", serviceKey(s), m.services, s);
    for (const auto& e : f.objects.slices) add(name, "EndpointSlice", sliceKey(e), m.slices, e);
    for (const auto& n : f.objects.nodes) add(name, "Node", nodeKey(n), m.nodes, n);
    for (const auto& p : f.objects.pools) add(name, "IPPool", poolKey(p), m.pools, p);
    for (const auto& p : f.objects.bgp_peers) {
      add(name, "BGPPeer", bgpPeerKey(p), m.bgp_peers, p);
    }
    for (const auto& a : f.objects.bgp_advertisements) {
      add(name, "BGPAdvertisement", bgpAdvertisementKey(a), m.bgp_advertisements, a);
    }
    for (const auto& s : f.objects.secrets) add(name, "Secret", secretKey(s), m.secrets, s);
    m.problems.insert(m.problems.end(), f.objects.problems.begin(), f.objects.problems.end());
  }
  merged_ = std::move(m);
  return Status::ok();
}

SourceChanges diffSnapshots(const SourceSnapshot& before, const SourceSnapshot& after) {
  SourceChanges out;
  std::set<std::string> services, slices;
  changedKeys(before.services, after.services, serviceKey, &services);
  changedKeys(before.slices, after.slices, sliceKey, &slices);
  out.services.assign(services.begin(), services.end());
  std::set<std::string> owners;
  for (const std::string& key : slices) {
    for (const auto* list : {&before.slices, &after.slices}) {
      if (const auto* e = findByKey(*list, key, sliceKey)) owners.insert(e->serviceKey());
    }
  }
  out.slices.assign(owners.begin(), owners.end());
  out.others = !(before.nodes == after.nodes) || !(before.pools == after.pools) ||
               !(before.bgp_peers == after.bgp_peers) ||
               !(before.bgp_advertisements == after.bgp_advertisements) ||
               !(before.secrets == after.secrets);
  return out;
}

Result<StatusFile> StatusFile::load(const std::string& path) {
  StatusFile f;
  f.path_ = path;
  std::error_code ec;
  if (path.empty() || !std::filesystem::exists(path, ec)) {
    if (ec) return Status::error("cannot check status file " + path + ": " + ec.message());
    return f;
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::error("status file " + path + " is not a regular file");
  }
  auto text = readFile(path);
  if (!text) return Status::error("status file " + path + " cannot be read: " + text.error());
  try {
    const YAML::Node root = YAML::Load(*text);
    if (!root || root.IsNull()) return f;  // an empty file: nothing allocated yet
    const YAML::Node all = root["services"];
    if (!root.IsMap() || (all && !all.IsMap())) {
      return Status::error("status file " + path + " is not a flowlb status file");
    }
    for (const auto& kv : all) {
      std::vector<IpAddr>& ips = f.ips_[kv.first.as<std::string>()];
      for (const auto& ip : kv.second["ingress"]) {
        auto a = IpAddr::parse(ip.as<std::string>());
        if (!a) {
          return Status::error("status file " + path + ":" + std::to_string(ip.Mark().line + 1) +
                               ": " + a.error());
        }
        ips.push_back(*a);
      }
    }
  } catch (const YAML::Exception& e) {
    return Status::error("status file " + path + ":" + std::to_string(e.mark.line + 1) + ": " +
                         e.msg);
  }
  return f;
}

void StatusFile::overlay(ServiceObject* s) const {
  if (!s->status.ips.empty()) return;  // the object's own status wins
  auto it = ips_.find(s->meta.key());
  if (it != ips_.end()) s->status.ips = it->second;
}

void StatusFile::overlay(std::vector<ServiceObject>* services) const {
  for (ServiceObject& s : *services) overlay(&s);
}

Status StatusFile::save(const Reconciled& r) {
  ips_.clear();
  YAML::Emitter y;
  y << YAML::BeginMap << YAML::Key << "services" << YAML::Value << YAML::BeginMap;
  for (const ServiceOutcome& s : r.services) {
    ips_[s.key] = s.ips;
    y << YAML::Key << s.key << YAML::Value << YAML::BeginMap;
    y << YAML::Key << "ingress" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (const IpAddr& a : s.ips) y << a.toString();
    y << YAML::EndSeq;
    y << YAML::Key << "pool" << YAML::Value << s.pool;
    y << YAML::Key << "satisfied" << YAML::Value << s.satisfied;
    y << YAML::Key << "reason" << YAML::Value << s.reason;
    y << YAML::Key << "message" << YAML::Value << s.message;
    y << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndMap;
  if (path_.empty()) return Status::ok();
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp);
    if (!out) return Status::error("cannot write " + tmp);
    out << y.c_str() << "\n";
    if (!out.flush()) return Status::error("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path_, ec);  // atomic: readers never see half a file
  if (ec) return Status::error("cannot replace " + path_ + ": " + ec.message());
  return Status::ok();
}

}  // namespace flowlb::controller
