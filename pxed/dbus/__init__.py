"""The D-Bus adapter: org.pxed.Pxed1 on the system bus (see pxectl(1) and the interface XML)."""
