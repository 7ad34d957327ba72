"""The mesh CA, leaf certificates and the connect proxy data path.

May import gossamer.gossip, gossamer.catalog and gossamer.intentions; never
gossamer.agent.
"""
