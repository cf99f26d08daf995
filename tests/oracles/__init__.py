"""Test-only oracles: reference implementations from other packages, and what they need to import."""
