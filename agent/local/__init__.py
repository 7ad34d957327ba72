"""This node's own record: local registrations and their checks, external nodes, the reaper.

The agent is the only writer of these records; peers learn them by sync.
"""
