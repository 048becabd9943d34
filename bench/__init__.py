"""Benchmarks of the lifecycle pipeline (run by `make bench`, not by `make test`)."""
