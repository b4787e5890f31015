/* Baselines for bench/run.sh datapath (not part of flowlb).
 * flowlb_min_steer: redirects IPv4 UDP to port 53 into the AF_XDP socket of
 *   the ingress interface (XSKMAP keyed by ifindex % 1024), everything else
 *   passes: the steering of the minimal AF_XDP forwarder.
 * flowlb_xdp_nat: the same NAT rewrite as flowlb's for one fixed backend
 *   (destination VIP -> backend, source -> the SNAT address, MACs of the
 *   egress link), done in the kernel and sent with XDP_REDIRECT out of the
 *   other interface: the in-kernel ceiling (what a Katran- or Cilium-like
 *   design reaches on this machine). */
/* libbpf's headers use the kernel's types, so they come last. */
/* clang-format off */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
/* clang-format on */

struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u32);
} xsks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} counter SEC(".maps");

/* Set by the tool before load (the only read-only data of this object). */
struct nat_cfg {
  __u32 vip, backend, snat; /* network order */
  __u32 out_ifindex;
  __u8 src_mac[6], dst_mac[6];
  __u16 port; /* network order */
  __u16 pad;
};
const volatile struct nat_cfg cfg = {};

static __always_inline struct udphdr* udp53(void* data, void* end) {
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  struct udphdr* udp = (void*)(ip + 1);
  if ((void*)(udp + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 ||
      ip->protocol != 17 || udp->dest != bpf_htons(53))
    return 0;
  return udp;
}

SEC("xdp")
int flowlb_min_steer(struct xdp_md* ctx) {
  if (!udp53((void*)(long)ctx->data, (void*)(long)ctx->data_end)) return XDP_PASS;
  return bpf_redirect_map(&xsks, ctx->ingress_ifindex % 1024, XDP_PASS);
}

/* RFC 1624: the checksum after a 32-bit word changed from `from` to `to`. */
static __always_inline __u16 csum_replace4(__u16 check, __u32 from, __u32 to) {
  __u32 sum = (__u16)~check;
  sum += (__u16)~from + (__u16) ~(from >> 16);
  sum += (__u16)to + (__u16)(to >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (__u16)~sum;
}

SEC("xdp")
int flowlb_xdp_nat(struct xdp_md* ctx) {
  void* data = (void*)(long)ctx->data;
  struct udphdr* udp = udp53(data, (void*)(long)ctx->data_end);
  if (!udp) return XDP_PASS;
  struct ethhdr* eth = data;
  struct iphdr* ip = (void*)(eth + 1);
  if (ip->daddr != cfg.vip || udp->dest != cfg.port) return XDP_PASS;
  __u32 old_s = ip->saddr, old_d = ip->daddr;
  ip->saddr = cfg.snat;
  ip->daddr = cfg.backend;
  ip->check = csum_replace4(csum_replace4(ip->check, old_s, cfg.snat), old_d, cfg.backend);
  if (udp->check) /* 0: no checksum (IPv4) */
    udp->check = csum_replace4(csum_replace4(udp->check, old_s, cfg.snat), old_d, cfg.backend);
#pragma unroll
  for (int i = 0; i < 6; i++) {
    eth->h_source[i] = cfg.src_mac[i];
    eth->h_dest[i] = cfg.dst_mac[i];
  }
  __u32 zero = 0;
  __u64* n = bpf_map_lookup_elem(&counter, &zero);
  if (n) *n += 1;
  return bpf_redirect(cfg.out_ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
