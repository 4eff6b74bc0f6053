"""The test bed: real servers (Kubernetes control plane, ACME CA, S3, nginx) started on loopback."""
