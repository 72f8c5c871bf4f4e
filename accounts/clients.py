from rest_framework.throttling import BaseThrottle


def client_ip(request) -> str:
    """The client's address, the one the lockout (django-axes) and the API throttles count by.

    DRF's own rule: X-Forwarded-For is read only through the NUM_PROXIES (TRACKER_PROXY_COUNT)
    proxies the operator declared, so a client cannot choose its address by sending the header."""
    return BaseThrottle().get_ident(request)
