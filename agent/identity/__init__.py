"""This agent's mesh identity: its material on disk, its signing authority, its services' leaves.

- files.py          `<data_dir>/identity/`: 0600 files written atomically
- cluster_secret.py the secret that opens the sealed root key (keyring, join token, or open)
- authority.py      this agent's intermediate and agent certificate
- leaves.py         the leaves of local services: issued once, kept on disk, renewed
- root_authority.py the mesh's root: its key (unsealed), bootstrap, init, rotation, seals
- mesh_identity.py  the whole, for the HTTP API, the renewal loop and agent-RPC TLS
- ca_config.py      PUT /v1/connect/ca/configuration: TTLs, init, rotation, checked first
- renewal_loop.py   the background loop: bootstrap, then keep everything in step
- assemble.py       puts the parts together (the agent and the tests build it alike)

The certificate logic itself is pure and lives in proxy/ca/; the replicated
CA map in agent/replicated/ca_store.py.
"""
