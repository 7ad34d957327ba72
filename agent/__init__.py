"""The composition root: process wiring, config, CLI, HTTP API, lifecycle.

Nothing else in gossamer imports this package.
"""
