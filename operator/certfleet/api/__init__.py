"""The CRD contract, pure: names, annotations and labels (``names``), ManagedCertificate and
CloudHost specs as validated values (``spec``), and the typed status (``status``).

Both programs speak it: the operator writes what the agent reads and the agent reports what
the operator summarises. No I/O here (an import-linter contract).
"""
