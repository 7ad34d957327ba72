"""Cluster-wide state any agent may write: the hybrid logical clock and the intention store.

Each is a last-writer-wins map stamped by this agent's persisted HLC and
synced through the digest exchange. The CA's trust bundle will join them.
"""
