/* flowlb's XDP program: steers packets for configured virtual services (and
 * NAT replies to the node's SNAT address) to the AF_XDP socket of the
 * receive queue; everything else, ARP included, passes to the kernel
 * untouched. It only steers and counts: the decisions are made in
 * userspace, where they are testable. */
/* libbpf's headers use the kernel's types, so they come last. */
/* clang-format off */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
/* clang-format on */

#include "flowlb_abi.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, FLOWLB_MAX_VIPS);
  __type(key, struct flowlb_vip_key);
  __type(value, struct flowlb_vip_value);
} flowlb_vips SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, FLOWLB_XSK_MAP_SIZE);
  __type(key, __u32);
  __type(value, __u32);
} flowlb_xsks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, FLOWLB_STAT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} flowlb_stats SEC(".maps");

const volatile struct flowlb_config flowlb_cfg = {
    .snat_port_min = FLOWLB_SNAT_PORT_MIN_DEFAULT,
    .snat_port_max = FLOWLB_SNAT_PORT_MAX_DEFAULT,
};

static __always_inline void count(__u32 stat) {
  __u64* v = bpf_map_lookup_elem(&flowlb_stats, &stat);
  if (v) *v += 1;
}

static __always_inline int passed(void) {
  count(FLOWLB_STAT_PASSED);
  return XDP_PASS;
}

/* Reads the destination port when the transport header is in the frame;
 * 0 for non-first fragments and other protocols. */
static __always_inline __u16 dst_port(void* l4, void* end, __u8 proto, int first_fragment) {
  if (!first_fragment || (proto != IPPROTO_TCP && proto != IPPROTO_UDP)) return 0;
  __u16* ports = l4;
  if ((void*)(ports + 2) > end) return 0;
  return ports[1];
}

SEC("xdp")
int flowlb_steer(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  void* end = (void*)(long)ctx->data_end;
  struct ethhdr* eth = data;
  struct flowlb_vip_key key = {};
  void* l4;
  int first = 1;

  count(FLOWLB_STAT_SEEN);
  if ((void*)(eth + 1) > end) return passed();
  __u16 proto = eth->h_proto;
  void* l3 = eth + 1;
  if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
    __u16* vlan = l3;
    if ((void*)(vlan + 2) > end) return passed();
    proto = vlan[1];
    l3 = vlan + 2;
  }
  if (proto == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = l3;
    if ((void*)(ip + 1) > end || ip->ihl < 5) return passed();
    key.addr[10] = 0xff;
    key.addr[11] = 0xff;
    __builtin_memcpy(&key.addr[12], &ip->daddr, 4);
    key.proto = ip->protocol;
    first = (ip->frag_off & bpf_htons(0x1fff)) == 0;
    l4 = (void*)ip + ip->ihl * 4;
  } else if (proto == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = l3;
    if ((void*)(ip6 + 1) > end) return passed();
    __builtin_memcpy(key.addr, &ip6->daddr, 16);
    key.proto = ip6->nexthdr; /* extension headers: userspace parses them */
    l4 = ip6 + 1;
  } else {
    return passed();
  }
  if (key.proto == IPPROTO_ICMP || key.proto == IPPROTO_ICMPV6) {
    /* Only errors (which quote a packet of some flow) go to userspace;
     * echo, and NDP on the SNAT address, stay with the kernel. The agent
     * installs an ICMP entry (port 0) for each VIP and SNAT address. */
    __u8* type = l4;
    if (!first || (void*)(type + 1) > end) return passed();
    int error = key.proto == IPPROTO_ICMP ? (*type == 3 || *type == 11 || *type == 12)
                                          : (*type >= 1 && *type <= 4);
    if (!error) return passed();
    key.port = 0;
  } else {
    key.port = dst_port(l4, end, key.proto, first);
  }
  struct flowlb_vip_value* v = bpf_map_lookup_elem(&flowlb_vips, &key);
  if (!v && key.proto != IPPROTO_ICMP && key.proto != IPPROTO_ICMPV6) {
    __u16 port = key.port;
    key.port = 0; /* whole-address entries: the SNAT address, VIP fragments */
    v = bpf_map_lookup_elem(&flowlb_vips, &key);
    if (v && (v->flags & FLOWLB_VIP_F_SNAT)) {
      __u16 p = bpf_ntohs(port);
      if (port != 0 && (p < flowlb_cfg.snat_port_min || p > flowlb_cfg.snat_port_max)) v = 0;
    } else if (v && port != 0) {
      v = 0; /* a VIP's whole-address entry catches only non-first fragments */
    }
  }
  if (!v) return passed();
  __u32 slot = (ctx->ingress_ifindex % FLOWLB_XSK_IFINDEX_SLOTS) * FLOWLB_XSK_MAX_QUEUES +
               (ctx->rx_queue_index % FLOWLB_XSK_MAX_QUEUES);
  if (!bpf_map_lookup_elem(&flowlb_xsks, &slot)) {
    count(FLOWLB_STAT_NO_SOCKET);
    return XDP_PASS;
  }
  count(FLOWLB_STAT_REDIRECTED);
  return bpf_redirect_map(&flowlb_xsks, slot, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
