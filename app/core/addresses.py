"""IP addresses that are only IPv6 wrappings of an IPv4 address.

The client-address keys (app.core.visitors) and the webhook guard (app.core.webhooks) both judge such an
address by the IPv4 address inside it: that is the host the packets really come from or go to.
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 prefixes (RFC 6052 well-known, RFC 8215 local-use).
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(addr: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address wraps, else None: IPv4-mapped (::ffff:a.b.c.d, how a dual-stack
    socket shows an IPv4 peer), NAT64, 6to4 (2002:AABB:CCDD::/48) and Teredo (the client's public IPv4)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr in _NAT64_WKP:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in _NAT64_LOCAL:  # RFC 6052 /48 layout: v4 bytes 0-1 at bits 48-63, 2-3 at 72-87
        packed = addr.packed
        return ipaddress.IPv4Address(packed[6:8] + packed[9:11])
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]  # the client; Python has already undone the obfuscation
    return None
