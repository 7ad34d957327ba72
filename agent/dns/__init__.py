"""DNS interface: Consul-style names under `consul.` answered from local state."""
