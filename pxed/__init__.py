"""pxed: a socket-activated proxy-DHCP network-boot server."""

__version__ = "0.1.0"
