"""ACL tokens and policies: Consul's rule language, validation and the authorizer.

The modules here are pure (no I/O); the HTTP middleware and the replicated
token store are the shells around them.
"""
