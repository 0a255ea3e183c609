"""Shared building blocks of the models (one definition each)."""
