#include "agent/datapath/xdp_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <algorithm>
#include <cstring>

#include "agent/packet/packet.h"

namespace flowlb::agent {
namespace {

std::string errnoText(int err) {
  char buf[256];
  libxdp_strerror(err, buf, sizeof buf);
  return buf;
}

// A program already on the interface: ours (stale, from a crash) is
// detached; anything else is refused.
Result<bool> clearStale(const Interface& iface) {
  struct xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(iface.ifindex);
  const long err = libxdp_get_error(mp);
  if (err != 0 || mp == nullptr) return false;  // nothing attached
  bool ours = true;
  std::string foreign;
  if (xdp_multiprog__is_legacy(mp)) {
    struct xdp_program* main = xdp_multiprog__main_prog(mp);
    foreign = main ? xdp_program__name(main) : "?";
    ours = main != nullptr && foreign == FLOWLB_XDP_PROG_NAME;
  } else {
    for (struct xdp_program* p = xdp_multiprog__next_prog(nullptr, mp); p != nullptr;
         p = xdp_multiprog__next_prog(p, mp)) {
      if (std::string(xdp_program__name(p)) != FLOWLB_XDP_PROG_NAME) {
        ours = false;
        foreign = xdp_program__name(p);
      }
    }
  }
  if (!ours) {
    xdp_multiprog__close(mp);
    return Status::error("interface " + iface.name + " already runs XDP program '" + foreign +
                         "', which is not flowlb's; remove it (xdp-loader unload " + iface.name +
                         " --all) or choose another interface");
  }
  const int rc = xdp_multiprog__detach(mp);
  xdp_multiprog__close(mp);
  if (rc != 0)
    return Status::error("cannot detach stale flowlb program from " + iface.name + ": " +
                         errnoText(rc));
  return true;
}

}  // namespace

Result<std::unique_ptr<XdpProgram>> XdpProgram::load(const std::string& object_path,
                                                     const std::vector<Interface>& interfaces,
                                                     XdpMode mode, uint16_t snat_port_min,
                                                     uint16_t snat_port_max,
                                                     uint32_t max_vip_entries) {
  std::unique_ptr<XdpProgram> self(new XdpProgram());
  // The multi-program dispatcher needs freplace, which some kernels refuse;
  // libxdp then falls back to a legacy attach. Skip the doomed attempt
  // unless the operator asked for it.
  if (getenv("LIBXDP_SKIP_DISPATCHER") == nullptr) setenv("LIBXDP_SKIP_DISPATCHER", "1", 0);
  self->prog_ = xdp_program__open_file(object_path.c_str(), "xdp", nullptr);
  if (const long err = libxdp_get_error(self->prog_); err != 0) {
    self->prog_ = nullptr;
    return Status::error("cannot open XDP object " + object_path + ": " +
                         errnoText(static_cast<int>(err)));
  }
  struct bpf_object* obj = xdp_program__bpf_obj(self->prog_);
  struct bpf_map* rodata = nullptr;
  struct bpf_map* m = nullptr;
  bpf_object__for_each_map(m, obj) {
    const std::string name = bpf_map__name(m);
    if (name.size() >= 7 && name.compare(name.size() - 7, 7, ".rodata") == 0) rodata = m;
  }
  if (rodata == nullptr) return Status::error(object_path + ": no .rodata (configuration) section");
  struct bpf_map* vips = bpf_object__find_map_by_name(obj, FLOWLB_MAP_VIPS);
  if (vips == nullptr) return Status::error(object_path + ": maps missing (rebuild the object)");
  if (const int rc = bpf_map__set_max_entries(vips, max_vip_entries); rc != 0) {
    return Status::error("cannot size the VIP map to " + std::to_string(max_vip_entries) +
                         " entries: " + errnoText(rc));
  }
  size_t size = 0;
  const void* initial = bpf_map__initial_value(rodata, &size);
  if (initial == nullptr || size != sizeof(flowlb_config)) {
    return Status::error(object_path +
                         ": .rodata does not match flowlb_abi.h (rebuild the object)");
  }
  flowlb_config cfg;
  std::memcpy(&cfg, initial, sizeof cfg);
  cfg.snat_port_min = snat_port_min;
  cfg.snat_port_max = snat_port_max;
  if (const int rc = bpf_map__set_initial_value(rodata, &cfg, sizeof cfg); rc != 0) {
    return Status::error(object_path +
                         ": cannot set the program's configuration: " + errnoText(rc));
  }

  for (const Interface& iface : interfaces) {
    auto stale = clearStale(iface);
    if (!stale) return stale.status();
    const std::vector<std::pair<enum xdp_attach_mode, const char*>> tries =
        mode == XdpMode::kNative
            ? std::vector<std::pair<enum xdp_attach_mode, const char*>>{{XDP_MODE_NATIVE, "native"}}
        : mode == XdpMode::kGeneric
            ? std::vector<std::pair<enum xdp_attach_mode, const char*>>{{XDP_MODE_SKB, "generic"}}
            : std::vector<std::pair<enum xdp_attach_mode, const char*>>{{XDP_MODE_NATIVE, "native"},
                                                                        {XDP_MODE_SKB, "generic"}};
    int rc = -1;
    const char* used = nullptr;
    for (auto [m2, name] : tries) {
      rc = xdp_program__attach(self->prog_, iface.ifindex, m2, 0);
      if (rc == 0) {
        used = name;
        break;
      }
      spdlog::warn("event=xdp_attach_failed iface={} mode={} reason=\"{}\"", iface.name, name,
                   errnoText(rc));
    }
    if (rc != 0)
      return Status::error("cannot attach XDP program to " + iface.name + ": " + errnoText(rc));
    self->attached_.push_back({iface, used, *stale});
    struct xdp_multiprog* mp = xdp_multiprog__get_from_ifindex(iface.ifindex);
    if (libxdp_get_error(mp) == 0 && mp != nullptr) {
      self->dispatcher_ = !xdp_multiprog__is_legacy(mp);
      xdp_multiprog__close(mp);
    }
    spdlog::info("event=xdp_attached iface={} ifindex={} mode={} path={} replaced_stale={}",
                 iface.name, iface.ifindex, used, self->dispatcher_ ? "dispatcher" : "legacy",
                 *stale);
  }
  self->vips_fd_ = bpf_object__find_map_fd_by_name(obj, FLOWLB_MAP_VIPS);
  self->xsks_fd_ = bpf_object__find_map_fd_by_name(obj, FLOWLB_MAP_XSKS);
  self->stats_fd_ = bpf_object__find_map_fd_by_name(obj, FLOWLB_MAP_STATS);
  if (self->vips_fd_ < 0 || self->xsks_fd_ < 0 || self->stats_fd_ < 0) {
    return Status::error(object_path + ": maps missing (rebuild the object)");
  }
  return self;
}

XdpProgram::~XdpProgram() {
  for (const Attached& a : attached_) {
    const enum xdp_attach_mode m = a.mode == std::string("native") ? XDP_MODE_NATIVE : XDP_MODE_SKB;
    const int rc = xdp_program__detach(prog_, a.iface.ifindex, m, 0);
    if (rc != 0) {
      spdlog::warn("event=xdp_detach_failed iface={} reason=\"{}\"", a.iface.name, errnoText(rc));
    } else {
      spdlog::info("event=xdp_detached iface={}", a.iface.name);
    }
  }
  if (prog_ != nullptr) xdp_program__close(prog_);
}

Status XdpProgram::setSocket(int ifindex, uint32_t queue, int xsk_fd) {
  const uint32_t slot = socketSlot(ifindex, queue);
  if (bpf_map_update_elem(xsks_fd_, &slot, &xsk_fd, BPF_ANY) != 0) {
    return Status::error("cannot register AF_XDP socket for ifindex " + std::to_string(ifindex) +
                         ": " + std::strerror(errno));
  }
  return Status::ok();
}

Status XdpProgram::syncVips(const std::set<SteerKey>& keys) {
  auto key = [](const SteerKey& k) {
    flowlb_vip_key out{};
    std::memcpy(out.addr, k.addr.bytes.data(), 16);
    uint8_t be[2];
    storeBe16(be, k.port);
    std::memcpy(&out.port, be, 2);
    out.proto = k.proto;
    return out;
  };
  // Add first (a packet for a new key finds it before the workers' tables
  // do; unknown keys are handed to the kernel, never misrouted), and undo
  // the additions if one fails.
  std::vector<SteerKey> added;
  for (const SteerKey& k : keys) {
    if (installed_.count(k)) continue;
    const flowlb_vip_key mk = key(k);
    flowlb_vip_value v{};
    v.flags = k.snat ? FLOWLB_VIP_F_SNAT : 0;
    if (bpf_map_update_elem(vips_fd_, &mk, &v, BPF_NOEXIST) != 0) {
      const int err = errno;
      for (const SteerKey& a : added) {
        const flowlb_vip_key ak = key(a);
        bpf_map_delete_elem(vips_fd_, &ak);
      }
      return Status::error("cannot add " + k.addr.toString() + ":" + std::to_string(k.port) +
                           " to the VIP map (" + std::strerror(err) +
                           "); the update was rolled back");
    }
    added.push_back(k);
  }
  for (const SteerKey& k : installed_) {
    if (keys.count(k)) continue;
    const flowlb_vip_key mk = key(k);
    bpf_map_delete_elem(vips_fd_, &mk);
  }
  installed_ = keys;
  return Status::ok();
}

std::vector<uint64_t> XdpProgram::counters() const {
  const int cpus = libbpf_num_possible_cpus();
  std::vector<uint64_t> out(FLOWLB_STAT_MAX, 0);
  std::vector<uint64_t> per_cpu(static_cast<size_t>(std::max(cpus, 1)));
  for (uint32_t i = 0; i < FLOWLB_STAT_MAX; ++i) {
    if (bpf_map_lookup_elem(stats_fd_, &i, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out[i] += v;
  }
  return out;
}

}  // namespace flowlb::agent
