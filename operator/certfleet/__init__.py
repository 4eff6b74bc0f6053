"""certfleet: keeps a valid TLS certificate on every webserver of a fleet."""
