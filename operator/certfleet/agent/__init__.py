"""The webserver agent: from the S3 datastore to a served certificate on every node.

- ``decision``: the pure rule "install this revision or not, and why" (SyncReason, decide)
- ``installer``: atomic install into ``<root>/<domain>/`` by a symlink switch, rollback
- ``webserver``: config test and graceful reload (nginx, apache2, any command)
- ``probe``: a TLS handshake with the local listener: which leaf is served
- ``reporter``: the node's entry in the ManagedCertificate's ``status.fleet.nodes``
- ``metrics``: Prometheus metrics on the agent's own registry
- ``loop``: the loop that ties them together (Agent)
- ``watch``: the instant hint: a watch on the ManagedCertificate wakes the loop
- ``config``: ``certfleet agent``'s flags and environment variables, validated (AgentConfig)
- ``main``: the wiring from an AgentConfig, the signals, the exit status
"""
