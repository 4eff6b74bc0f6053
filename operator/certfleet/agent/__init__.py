"""The webserver agent, certfleet's second program: it brings the datastore's certificate to a
served certificate on one node, and may read S3, write the node's files, run the webserver's
commands and patch the node's own entry of a ManagedCertificate's status, but knows nothing of
the operator (no kopf, nothing of the controller's side). ``config`` turns flags and environment
variables into an AgentConfig; ``main`` wires the agent from it, handles signals and the exit
status; ``loop`` is the sync loop (Agent) that ties the others together; ``decision`` is the
pure rule "install this revision or not, and why" (the policy's Reason or the agent's own
SyncReason); ``installer`` switches files into ``<root>/<domain>/`` atomically and rolls back;
``webserver`` runs the configuration test and the graceful reload (nginx, apache2, any
command); ``probe`` asks the local TLS listener which leaf it serves; ``reporter`` writes the
node's entry in ``status.fleet.nodes``; ``watch`` wakes the loop when the ManagedCertificate's
status names a new serial (a hint only); ``metrics`` keeps Prometheus metrics on the agent's
own registry.
"""
