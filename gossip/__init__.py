"""Membership and failure detection through the real HashiCorp Serf.

gossamer runs `serf agent` as a supervised child (process.py, started with
what serf_launch.py writes and spells) and talks to it over Serf's msgpack
RPC protocol (rpc*.py). member_watch.py keeps a member table current from
serf's events, joining.py joins the ring once or until it works, tags.py
names the tags an agent publishes. Nothing in here imports any
other part of gossamer.
"""
