"""Per-peer socket protections: TCP MD5 signatures (RFC 2385) and GTSM (RFC 5082).

Linux only (the platform rserver targets). Both are set per peer address:
- TCP_MD5SIG on the *listening* socket (and on an outgoing socket before connect), so the
  kernel can verify the SYN; a key of b"" removes it.
- GTSM: we send with TTL/hop limit 255 and ask the kernel to drop anything that arrives
  with less (IP_MINTTL / IPV6_MINHOPCOUNT), RFC 5082 §3.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["set_md5", "set_gtsm", "normalize_addr", "TCP_MD5SIG_MAXKEYLEN"]

TCP_MD5SIG = 14                 # linux/tcp.h
TCP_MD5SIG_MAXKEYLEN = 80       # linux/tcp.h
IP_MINTTL = getattr(socket, "IP_MINTTL", 21)              # linux/in.h
IPV6_MINHOPCOUNT = getattr(socket, "IPV6_MINHOPCOUNT", 73)  # linux/in6.h


def normalize_addr(addr: str) -> str:
    """The canonical text of an address; IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4."""
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _sockaddr_storage(addr: str) -> bytes:
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        # struct sockaddr_in: family (host order), port, address
        sa = struct.pack("=HH4s", socket.AF_INET, 0, ip.packed)
    else:
        # struct sockaddr_in6: family, port, flowinfo, address, scope id
        sa = struct.pack("=HHI16sI", socket.AF_INET6, 0, 0, ip.packed, 0)
    return sa.ljust(128, b"\0")   # __kernel_sockaddr_storage is 128 bytes


def set_md5(sock: socket.socket, peer_addr: str, key: str | bytes) -> None:
    """Install (or with an empty key, remove) the RFC 2385 key for ``peer_addr`` on ``sock``.

    On an AF_INET6 socket an IPv4 peer is given as its IPv4-mapped address, which is how the
    kernel sees such a peer there.
    """
    k = key.encode() if isinstance(key, str) else key
    if len(k) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP MD5 key longer than {TCP_MD5SIG_MAXKEYLEN} bytes")
    addr = normalize_addr(peer_addr)
    if sock.family == socket.AF_INET6 and ipaddress.ip_address(addr).version == 4:
        addr = "::ffff:" + addr
    # struct tcp_md5sig: addr, flags, prefixlen, keylen, ifindex, key[80]
    opt = _sockaddr_storage(addr) + struct.pack("=BBHi", 0, 0, len(k), 0) + k.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, opt)


def set_gtsm(sock: socket.socket, hops: int = 1) -> None:
    """RFC 5082: send with TTL 255, accept only TTL >= 256 - hops (255 for a direct peer)."""
    minttl = 256 - hops
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, minttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, minttl)
