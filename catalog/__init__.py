"""Nodes, services and checks: versioned records, merge, queries, anti-entropy.

- model.py, wire.py: the records as values and on the wire; consul_json.py: Consul's JSON shapes;
- registration*.py: Consul's registration bodies parsed into records;
- merge.py: which record wins; live.py: the merged catalog an agent answers from;
- view.py: pure queries (instances, tags, node-meta, health) over a snapshot;
- blocking.py: blocking-query index math; filter*.py: Consul's `?filter=`;
- sync_protocol.py, lww*.py, hlc.py: the peer exchange and last-writer-wins maps;
- store*.py: SQLite persistence.

May import gossamer.gossip; never gossamer.agent or gossamer.proxy.
"""
