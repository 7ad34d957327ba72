"""This agent's mesh identity: its material on disk, its signing authority, its services' leaves.

- files.py          `<data_dir>/identity/`: 0600 files written atomically
- cluster_secret.py the secret that opens the sealed root key (keyring, join token, or open)
- authority.py      bootstrap, init, rotation; this agent's intermediate and agent certificate
- leaves.py         the leaves of local services: issued once, kept on disk, renewed
- mesh_identity.py  the whole, for the HTTP API, the renewal loop and agent-RPC TLS

The certificate logic itself is pure and lives in proxy/ca/; the replicated
CA map in agent/replicated/ca_store.py.
"""
