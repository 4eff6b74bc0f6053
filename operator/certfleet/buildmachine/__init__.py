"""The build-machine program (`certfleet reconcile -f FILE`): the operator's core without a
cluster. ``controller.reconcile.Reconciler`` (gather -> decide -> act), the very one the
operator runs, over file-backed ports: ``files`` (the runtimedata cache, MANUAL folders, ACME
accounts), ``secrets_dir`` (the CloudHosts' datastores, their secrets as files), ``documents``
(the YAML input, validated by ``api.spec``), ``report`` (lines, a status file, a Prometheus
textfile); ``main`` is the composition root. It decides nothing itself: the import contracts
forbid it the policy and Kubernetes.
"""
