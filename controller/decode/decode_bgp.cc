// BGPPeer and BGPAdvertisement (flowlb.io/v1alpha1) to the controller's
// BGP domain objects (controller/bgp/), with the readers every decoder
// shares.
#include "common/base64.h"
#include "controller/decode/decode.h"
#include "controller/decode/fields.h"

namespace flowlb::controller {

using namespace decode_fields;  // NOLINT: the readers every decoder shares

namespace {

bool number(const std::string& t, uint64_t max, uint64_t* out) {
  if (t.empty() || t.size() > 10) return false;
  uint64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v > max) return false;
  *out = v;
  return true;
}

std::vector<std::string> splitColons(const std::string& t) {
  std::vector<std::string> out(1);
  for (char c : t) {
    if (c == ':') {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

uint32_t asn(const Doc* v, const Doc& at, const std::string& what) {
  if (!v) bad(at, what + " is required");
  return static_cast<uint32_t>(integer(v, what, 1, 4294967295LL));
}

Labels matchLabels(const Doc* selector, const std::string& what) {
  if (!selector) return {};
  if (!selector->isMap()) bad(*selector, what + " must be a mapping");
  if (selector->get("matchExpressions")) {
    bad(*selector, what + ".matchExpressions is not supported (use matchLabels)");
  }
  return stringMap(selector->get("matchLabels"), what + ".matchLabels");
}

std::vector<std::string> strings(const Doc* v, const std::string& what) {
  std::vector<std::string> out;
  for (const Doc& x : list(v, what)) out.push_back(str(&x, what + "[]"));
  return out;
}

}  // namespace

bool parseCommunity(const std::string& text, uint32_t* out) {
  static const std::map<std::string, uint32_t> kNamed = {
      {"no-export", 0xffffff01}, {"no-advertise", 0xffffff02}, {"no-export-subconfed", 0xffffff03},
      {"no-peer", 0xffffff04},   {"blackhole", 0xffff029a},    {"graceful-shutdown", 0xffff0000}};
  if (auto it = kNamed.find(text); it != kNamed.end()) {
    *out = it->second;
    return true;
  }
  const auto parts = splitColons(text);
  uint64_t a = 0, b = 0;
  if (parts.size() == 2 && number(parts[0], 0xffff, &a) && number(parts[1], 0xffff, &b)) {
    *out = static_cast<uint32_t>(a << 16 | b);
    return true;
  }
  if (parts.size() == 1 && number(parts[0], 0xffffffff, &a)) {
    *out = static_cast<uint32_t>(a);
    return true;
  }
  return false;
}

bool parseLargeCommunity(const std::string& text, LargeCommunityValue* out) {
  const auto parts = splitColons(text);
  uint64_t g = 0, l1 = 0, l2 = 0;
  if (parts.size() != 3 || !number(parts[0], 0xffffffff, &g) ||
      !number(parts[1], 0xffffffff, &l1) || !number(parts[2], 0xffffffff, &l2)) {
    return false;
  }
  *out = {static_cast<uint32_t>(g), static_cast<uint32_t>(l1), static_cast<uint32_t>(l2)};
  return true;
}

Decoded<BgpPeerSpec> decodeBgpPeer(const Doc& obj) {
  return guarded<BgpPeerSpec>([&] {
    BgpPeerSpec p;
    const ObjectMeta m = meta(obj, false);
    p.name = m.name;
    p.uid = m.uid;
    const Doc* spec = obj.get("spec");
    if (!spec || !spec->isMap()) bad(obj, "spec is required");
    if (!spec->get("peerAddress")) bad(*spec, "spec.peerAddress is required");
    p.address = address(spec->get("peerAddress"), "spec.peerAddress");
    p.peer_asn = asn(spec->get("peerASN"), *spec, "spec.peerASN");
    p.local_asn = asn(spec->get("myASN"), *spec, "spec.myASN");
    if (const Doc* s = spec->get("sourceAddress")) {
      p.source = address(s, "spec.sourceAddress");
      if (p.source->isV4() != p.address.isV4()) {
        bad(*s, "spec.sourceAddress is not of the family of spec.peerAddress");
      }
    }
    if (const Doc* port = spec->get("port")) {
      p.port = static_cast<uint16_t>(integer(port, "spec.port", 1, 65535));
    }
    if (const Doc* h = spec->get("holdTimeSeconds")) {
      const int64_t v = integer(h, "spec.holdTimeSeconds", 0, 65535);
      if (v == 1 || v == 2) bad(*h, "spec.holdTimeSeconds must be 0 or at least 3 (RFC 4271)");
      p.hold_time_s = static_cast<uint16_t>(v);
    }
    if (const Doc* ref = spec->get("passwordSecretRef")) {
      if (!ref->isMap()) bad(*ref, "spec.passwordSecretRef must be a mapping");
      SecretKeyRef r;
      if (!ref->get("name")) bad(*ref, "spec.passwordSecretRef.name is required");
      r.name = str(ref->get("name"), "spec.passwordSecretRef.name");
      if (r.name.empty() || r.name.size() > 253) {
        bad(*ref->get("name"), "spec.passwordSecretRef.name must be a Secret's name");
      }
      if (const Doc* k = ref->get("key")) r.key = str(k, "spec.passwordSecretRef.key");
      if (r.key.empty()) bad(*ref, "spec.passwordSecretRef.key must not be empty");
      p.password_secret = std::move(r);
    }
    if (const Doc* b = spec->get("bfdProfile")) {
      if (!b->isMap()) bad(*b, "spec.bfdProfile must be a mapping");
      BfdSpec bfd;
      if (const Doc* x = b->get("transmitIntervalMs")) {
        bfd.min_tx_ms =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.transmitIntervalMs", 10, 60000));
      }
      if (const Doc* x = b->get("receiveIntervalMs")) {
        bfd.min_rx_ms =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.receiveIntervalMs", 10, 60000));
      }
      if (const Doc* x = b->get("detectMultiplier")) {
        bfd.multiplier =
            static_cast<uint32_t>(integer(x, "spec.bfdProfile.detectMultiplier", 1, 255));
      }
      p.bfd = bfd;
    }
    if (boolean(spec->get("enableGracefulRestart"), "spec.enableGracefulRestart", false)) {
      p.graceful_restart_s = 120;
      if (const Doc* t = spec->get("gracefulRestartTimeSeconds")) {
        p.graceful_restart_s =
            static_cast<uint16_t>(integer(t, "spec.gracefulRestartTimeSeconds", 1, 4095));
      }
    }
    p.node_selector = matchLabels(spec->get("nodeSelector"), "spec.nodeSelector");
    return p;
  });
}

Decoded<BgpAdvertisementSpec> decodeBgpAdvertisement(const Doc& obj) {
  return guarded<BgpAdvertisementSpec>([&] {
    BgpAdvertisementSpec a;
    a.route.name = meta(obj, false).name;
    const Doc* spec = obj.get("spec");
    if (spec && !spec->isMap()) bad(*spec, "spec must be a mapping");
    static const Doc kEmpty = Doc::map();
    if (!spec) spec = &kEmpty;
    a.pools = strings(spec->get("ipPools"), "spec.ipPools");
    a.pool_selector = matchLabels(spec->get("ipPoolSelector"), "spec.ipPoolSelector");
    a.route.peers = strings(spec->get("peers"), "spec.peers");
    for (const Doc& c : list(spec->get("communities"), "spec.communities")) {
      const std::string t = str(&c, "spec.communities[]");
      uint32_t v = 0;
      if (!parseCommunity(t, &v)) {
        bad(c, "spec.communities: '" + t +
                   "' is not a community (ASN:VALUE with 16-bit parts, a 32-bit number, or "
                   "no-export, no-advertise, no-export-subconfed, no-peer, blackhole, "
                   "graceful-shutdown)");
      }
      a.route.communities.push_back(v);
    }
    for (const Doc& c : list(spec->get("largeCommunities"), "spec.largeCommunities")) {
      const std::string t = str(&c, "spec.largeCommunities[]");
      LargeCommunityValue v;
      if (!parseLargeCommunity(t, &v)) {
        bad(c, "spec.largeCommunities: '" + t +
                   "' is not a large community (GLOBAL:LOCAL1:LOCAL2, 32-bit numbers)");
      }
      a.route.large_communities.push_back(v);
    }
    if (const Doc* l = spec->get("localPref")) {
      a.route.local_pref = static_cast<uint32_t>(integer(l, "spec.localPref", 0, 4294967295LL));
    }
    if (const Doc* l = spec->get("aggregationLength")) {
      a.route.aggregation_v4 = static_cast<uint8_t>(integer(l, "spec.aggregationLength", 1, 32));
    }
    if (const Doc* l = spec->get("aggregationLengthV6")) {
      a.route.aggregation_v6 = static_cast<uint8_t>(integer(l, "spec.aggregationLengthV6", 1, 128));
    }
    return a;
  });
}

Decoded<SecretObject> decodeSecret(const Doc& obj) {
  return guarded<SecretObject>([&] {
    SecretObject sec;
    sec.meta = meta(obj, true);
    if (const Doc* t = obj.get("type")) sec.type = str(t, "type");
    if (const Doc* d = obj.get("data")) {
      for (const auto& [k, v] : stringMap(d, "data")) {
        auto bytes = base64Decode(v);
        if (!bytes) bad(*d, "data." + k + " is not base64");
        sec.data[k] = std::move(*bytes);
      }
    }
    // What `kubectl apply` turns into data; a file may carry it as it is.
    if (const Doc* d = obj.get("stringData")) {
      for (auto& [k, v] : stringMap(d, "stringData")) sec.data[k] = std::move(v);
    }
    return sec;
  });
}

}  // namespace flowlb::controller
