"""Talking to registries: the distribution HTTP API client and registry credentials."""
