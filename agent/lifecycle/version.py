"""Version strings.

Consul clients (Nomad, consul-template, py-consul users) read
`Config.Version` from /v1/agent/self and compare it to decide which features
to use, so the agent reports the Consul API level it is compatible with
there, and its own version beside it.
"""

VERSION = "0.2.0"
CONSUL_COMPAT_VERSION = "1.22.0"
