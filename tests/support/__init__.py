"""Test-only infrastructure: the real CRD API server (crdserver), the Metacontroller driver
over it (kube), fault injectors (faults) and a gated registry (registry). What benchmarks share
with the tests lives in the top-level `testbed` package.
"""
