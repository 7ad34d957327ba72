"""Intentions: who may talk to whom. Pure: imports nothing else of gossamer."""
