"""Packet sources: capture files (and, later, live interfaces)."""
