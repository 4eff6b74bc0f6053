"""The Kubernetes adapters: everything certfleet reads from or writes to a kube-apiserver.

``gateway``: Secrets, CloudHosts and ManagedCertificate status through the official client,
every answer bounded and type-checked; ``secrets``: kubernetes.io/tls Secrets as PEM pairs;
``lease``: the Lease that lets exactly one operator replica act. No decision is taken here:
callers above decide, these adapters do.
"""
