"""Agent RPC: the server peers sync with, the client side of an exchange, the replicator.

The messages are `catalog.sync_protocol` and `catalog.lww_sync` (pure); this
package moves them over mutual TLS 1.3 (tls.py), with no plaintext mode.
What it needs of this agent's identity is the `RpcIdentity` interface
(identity.py); who a peer is and why one is refused are pure (peer_check.py,
refusals.py); verified connections are kept between conversations (pool.py).
"""
