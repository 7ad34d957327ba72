"""Nodes, services and checks: versioned records, merge, queries, anti-entropy.

May import gossamer.gossip; never gossamer.agent or gossamer.proxy.
"""
