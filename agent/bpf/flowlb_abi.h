/* The one kernel/user ABI of flowlb: every struct, map name and constant
 * shared by the XDP program (xdp_steer.bpf.c) and the agent's C++ code.
 * Fixed-width types only; sizes are checked on both sides. */
#ifndef FLOWLB_AGENT_BPF_FLOWLB_ABI_H_
#define FLOWLB_AGENT_BPF_FLOWLB_ABI_H_

#include <linux/types.h>

#define FLOWLB_XDP_PROG_NAME "flowlb_steer"
#define FLOWLB_MAP_VIPS "flowlb_vips"
#define FLOWLB_MAP_XSKS "flowlb_xsks"
#define FLOWLB_MAP_STATS "flowlb_stats"

#define FLOWLB_MAX_VIPS 4096
/* The XSKMAP holds one socket per (interface, receive queue):
 * key = (ifindex % FLOWLB_XSK_IFINDEX_SLOTS) * FLOWLB_XSK_MAX_QUEUES + queue.
 * One program serves every interface; the agent refuses interfaces whose
 * keys would collide. */
#define FLOWLB_XSK_MAX_QUEUES 16
#define FLOWLB_XSK_IFINDEX_SLOTS 1024
#define FLOWLB_XSK_MAP_SIZE (FLOWLB_XSK_MAX_QUEUES * FLOWLB_XSK_IFINDEX_SLOTS)

/* Key of the VIP map: a virtual service's address (IPv4 as ::ffff:a.b.c.d),
 * port (network order) and IP protocol. Port 0 is a whole-address entry: for
 * the SNAT address (flag FLOWLB_VIP_F_SNAT) it catches NAT replies to ports
 * in the SNAT range; for a VIP it catches only non-first fragments (they
 * carry no port); for ICMP/ICMPv6 it catches errors about the address. */
struct flowlb_vip_key {
  __u8 addr[16];
  __u16 port;
  __u8 proto;
  __u8 pad;
};

/* Value: flags for the service. */
struct flowlb_vip_value {
  __u32 flags;
};
#define FLOWLB_VIP_F_SNAT 0x1u /* the node's SNAT address: match by port range */

/* Counters, one per-CPU array slot each. */
enum flowlb_stat {
  FLOWLB_STAT_SEEN = 0,
  FLOWLB_STAT_REDIRECTED,
  FLOWLB_STAT_PASSED,
  FLOWLB_STAT_NO_SOCKET,
  FLOWLB_STAT_MAX,
};

/* The agent's source-NAT ports unless configured (--snat-ports, the file's
 * snat.portMin/portMax): above Linux's ephemeral range (32768-60999), so the
 * node's own connections never meet them. The one place this default lives. */
#define FLOWLB_SNAT_PORT_MIN_DEFAULT 61000
#define FLOWLB_SNAT_PORT_MAX_DEFAULT 65535

/* Read-only configuration set before load (const volatile rodata). */
struct flowlb_config {
  __u16 snat_port_min; /* host order */
  __u16 snat_port_max;
  __u32 pad;
};

#ifdef __cplusplus
static_assert(sizeof(struct flowlb_vip_key) == 20, "ABI: flowlb_vip_key");
static_assert(sizeof(struct flowlb_vip_value) == 4, "ABI: flowlb_vip_value");
static_assert(sizeof(struct flowlb_config) == 8, "ABI: flowlb_config");
#else
_Static_assert(sizeof(struct flowlb_vip_key) == 20, "ABI: flowlb_vip_key");
_Static_assert(sizeof(struct flowlb_vip_value) == 4, "ABI: flowlb_vip_value");
_Static_assert(sizeof(struct flowlb_config) == 8, "ABI: flowlb_config");
#endif

#endif /* FLOWLB_AGENT_BPF_FLOWLB_ABI_H_ */
