"""Agent RPC: the server peers sync with, the client side of an exchange, the replicator.

The messages are `catalog.sync_protocol` and `catalog.lww_sync` (pure); this
package moves them over sockets. Certificate signing will join it.
"""
