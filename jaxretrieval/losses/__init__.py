"""Losses as pure functions on arrays; each has a NumPy reference test in tests/losses/."""
