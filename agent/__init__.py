"""The agent process: what runs on each host, wired together. Nothing else in gossamer imports it.

Sub-packages, each named for what it holds:
- lifecycle/: the composition root: start/stop order, signals, data dir,
  listeners, systemd, logs, reload;
- cli/: every `gossamer` command (the agent itself and the HTTP clients);
- config/: typed, layered configuration and its errors;
- local/: this node's own record: local registrations, external nodes, the reaper;
- checks/: the health checks this agent runs (pure status core, probes, runner);
- sync/: agent RPC: the server peers sync with, the client, the replicator;
- replicated/: cluster-wide state any agent may write: the HLC, the intention and CA stores;
- identity/: this agent's mesh identity: its key material on disk, its intermediate and
  agent certificate, its services' leaves and their renewal;
- http/: Consul's HTTP API; dns/: Consul's DNS interface.
"""
