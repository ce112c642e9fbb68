"""registry: an OCI distribution v2 server and the distribution client."""
