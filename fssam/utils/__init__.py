"""Distributed helpers, seeding and logging."""
