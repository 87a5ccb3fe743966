"""The sans-I/O proxy-DHCP core: bytes and a clock value in, decisions and bytes out.

Nothing in this package opens a socket, starts a task or configures logging.
"""
