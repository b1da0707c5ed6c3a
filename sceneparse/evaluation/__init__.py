"""Metrics, scoring and evaluation loops."""
