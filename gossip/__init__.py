"""Membership and failure detection through the real HashiCorp Serf.

gossamer runs `serf agent` as a supervised child and talks to it over Serf's
msgpack RPC protocol. Nothing in here imports any other part of gossamer.
"""
