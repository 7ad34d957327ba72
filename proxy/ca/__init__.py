"""The mesh CA's certificate code: keys, roots, intermediates, leaves, verification. Pure.

One concept per module; nothing here touches a socket, a file or the clock:
`now` is passed in, and so is the `random.Random` that spreads renewals.
Keys and certificate serials come from the OS random source through
`cryptography` and `secrets` (key material must never come from a seeded PRNG).

- errors.py      the exception types the HTTP edge maps once
- keys.py        key types and sizes, PEM in and out, key ids (Consul's colon hex)
- settings.py    the CA configuration (TTLs, key type) with its bounds
- profile.py     what every gossamer certificate carries; an Issuer (cert + key)
- root.py        trust domain, self-signed roots, cross-signing for rotation
- operator_root.py  an operator-supplied root and key, checked before use
- intermediate.py   an agent's intermediate CA and its agent TLS certificate
- leaf.py        service leaves, from a key made here or from a checked CSR
- verify.py      chain verification against a trust bundle -> the SPIFFE ID
- spiffe_leaf.py the SPIFFE decisions on a certificate's names, for both verifiers
- cert_facts.py  a small DER reader: what the proxy checks, without `cryptography`
- verified_chain.py  the proxy's checks on the chain OpenSSL verified in the handshake
- renewal.py     when to renew a leaf (about half-life, jittered)
- consul_json.py Consul's JSON shapes for roots, leaves and the CA configuration
"""
