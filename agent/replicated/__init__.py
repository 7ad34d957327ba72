"""Cluster-wide state any agent may write: the hybrid logical clock, the intention and CA stores.

Each is a last-writer-wins map (lww_replica.py holds what they share)
stamped by this agent's one persisted HLC and synced through the digest
exchange.
"""
