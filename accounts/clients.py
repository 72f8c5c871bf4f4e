from ipaddress import IPv6Address, ip_address, ip_network

from rest_framework.throttling import BaseThrottle

# How many leading bits of an IPv6 address name one client. A home or an office gets a /64 (at
# least) from its provider and picks any address in it at will, so counting each address apart gave
# whoever guesses passwords 5 more tries per address, as many as they like.
IPV6_CLIENT_PREFIX = 64


def client_ip(request) -> str:
    """The client's address, the one the lockout (django-axes) and every throttle count by.

    DRF's own rule: X-Forwarded-For is read only through the NUM_PROXIES (TRACKER_PROXY_COUNT)
    proxies the operator declared, so a client cannot choose its address by sending the header. An
    IPv6 address counts as its /64 network, written as the network's first address (what django-
    axes's records and the admin show); an IPv4 address written as IPv6 (`::ffff:203.0.113.9`) as
    itself."""
    ident = BaseThrottle().get_ident(request)
    try:
        address = ip_address(ident)
    except ValueError:
        return ident
    if not isinstance(address, IPv6Address):
        return ident
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False).network_address)
