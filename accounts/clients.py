from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from rest_framework.throttling import BaseThrottle

# How many leading bits of an IPv6 address name one client. A home or an office gets a /64 (at
# least) from its provider and picks any address in it at will, so counting each address apart gave
# whoever guesses passwords 5 more tries per address, as many as they like.
IPV6_CLIENT_PREFIX = 64


def client_ip(request) -> str | None:
    """The client's address, the one the lockout (django-axes) and every throttle count by.

    DRF's own rule: X-Forwarded-For is read only through the NUM_PROXIES (TRACKER_PROXY_COUNT)
    proxies the operator declared, so a client cannot choose its address by sending the header. An
    IPv6 address counts as its /64 network, written as the network's first address (what django-
    axes's records and the admin show); an IPv4 address written as IPv6 (`::ffff:203.0.113.9`) as
    itself.

    Some proxies write the client's port with its address (`203.0.113.9:51234`, `[2001:db8::1]:443`):
    the port is dropped, or each connection was another client. An entry that names no address at
    all (`unknown`) counts as the proxy that wrote it. Either reached django-axes as it was, which
    stores an address: every failed sign-in behind such a proxy answered 500."""
    address = parsed_address(BaseThrottle().get_ident(request))
    if address is None:
        remote_addr = request.META.get("REMOTE_ADDR")
        address = parsed_address(remote_addr)
        if address is None:
            # The server knows no address either (a Unix socket's is empty): django-axes stores none.
            return remote_addr
    if isinstance(address, IPv4Address):
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False).network_address)


def parsed_address(text: str | None) -> IPv4Address | IPv6Address | None:
    """The address `text` writes, with or without a port after it, or None."""
    text = (text or "").strip()
    if text.startswith("["):
        # [IPv6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        # IPv4:port (an IPv6 address has two colons at least)
        text = text.partition(":")[0]
    try:
        return ip_address(text)
    except ValueError:
        return None
