"""Ratchet Python SDK."""
