"""Benchmarks: `python -m bench.run` measures the job pipeline beside raw Celery baselines."""
