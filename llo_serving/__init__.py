"""What the two gunicorn-served services (the hooks and ieapi) share: one log format and
Prometheus metrics that stay correct with several worker processes."""
