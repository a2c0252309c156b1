"""rserver: a BGP route server for Internet Exchange Points (RFC 7947)."""

__version__ = "0.1.0"
