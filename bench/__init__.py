"""Benchmarks of LLO Docker: the hooks and the IE Docker API measured against their floors.

`python -m bench` (or `./scripts/bench.sh`) runs everything and writes `docs/benchmarks.md` and
`docs/img/*.png`; `--quick` is a smoke run of a few seconds per part. See docs/benchmarks.md for
what each part measures and why.
"""
