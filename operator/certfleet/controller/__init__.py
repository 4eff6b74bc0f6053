"""The operator program: one ManagedCertificate at a time, in one direction.

``gather`` reads everything a decision needs (spec, CloudHost, datastore, cache, the CA's
renewal window) through the narrow ``ports``; ``decide`` turns what was gathered and the
time into a ``Plan`` (pure); ``act`` carries the plan out (cache, issue, publish) and says
what came of it (an ``Outcome``); ``report`` turns that into a status patch and events, and
``metrics`` into Prometheus series. ``adapters`` implement the ports over ``kube``,
``datastore`` and ``acme_issuer``; ``handlers`` register with kopf and only unpack and call;
``main`` is the composition root behind ``certfleet operator``.
"""
