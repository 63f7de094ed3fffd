"""The backend side: connection pools, load balancing, health checks, TLS to backends."""
