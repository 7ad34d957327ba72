"""This node's own record: local registrations and their checks, external nodes, the reaper.

The agent is the only writer of these records; peers learn them by sync.
node.py (LocalNode) registers, stores and publishes; own_record.py says who
the node is and builds its record; registry.py holds what is registered in
memory (and the unknown-id errors), stored.py its stored form and restore,
config_registrations.py what config files register, maintenance.py and
alias.py the maintenance rows and what an alias check sees.
"""
