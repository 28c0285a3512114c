/* SPDX-License-Identifier: MIT */
/*
 * udp_batch - what the batched UDP paths (the coordinator's listen sockets, the relay ports)
 * share: socket buffers sized for a burst, and the kernel's own count of what it dropped.
 *
 * A socket read with recvmmsg still loses datagrams when a burst outruns the loop; the
 * default 212 KB buffer holds about 1,500 of them. udp_sockbuf_set() asks for more (with
 * CAP_NET_ADMIN past net.core.[rw]mem_max), and SO_RXQ_OVFL makes the kernel attach its
 * cumulative drop count to every datagram, so a drop is counted instead of invisible.
 */
#ifndef WGPUNCH_UDP_BATCH_H
#define WGPUNCH_UDP_BATCH_H

#include <stdint.h>
#include <sys/socket.h>

/* The control space a received datagram needs for the SO_RXQ_OVFL count. */
#define UDP_BATCH_CTL_SPACE CMSG_SPACE(sizeof(uint32_t))

/* SO_RCVBUF and SO_SNDBUF of fd to `bytes` (the FORCE variants first, then the ordinary
 * ones, which the sysctl caps); *rcv and *snd get what the kernel granted (unchanged when
 * it does not say). Never fails: a smaller buffer is a performance matter, not an error. */
void udp_sockbuf_set(int fd, int bytes, int *rcv, int *snd);

/* Turns SO_RXQ_OVFL on for fd: 0 or -errno. */
int udp_rxq_ovfl_enable(int fd);

/* The drops h's SO_RXQ_OVFL count adds to *last (the highest count seen on that socket),
 * and *last updated; 0 when h carries none. */
uint64_t udp_rxq_ovfl(const struct msghdr *h, uint32_t *last);

#endif
