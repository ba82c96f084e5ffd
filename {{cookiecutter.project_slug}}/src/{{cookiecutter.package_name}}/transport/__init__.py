"""Transports: the broker plugin layer (broker/)."""
