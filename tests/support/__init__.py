"""Shared helpers for the durable-ir test suite."""
