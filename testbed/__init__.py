"""The whole system on one machine, shared by the tests and the benchmarks (bench/): a private
dockerd with locally built images, server processes started and stopped by PID, the Orion-LD
double, the Metacontroller-faithful driver (manifests, CRD schema checker, object store,
controller loop) and `stack.Stack`, which puts them together.

Test-only helpers (the CRD API server, the driver over it, fault injectors) stay in
tests/support.
"""
