"""The job systems a user would pick instead of Orchestra, measured by one method (method.py).

Each system's module holds its no-op task, its worker command, its driver (`python -m
bench.peers.<module> enqueue|trips`, the client side run in a process of its own and in the
system's own interpreter) and the query that reads the drain from the jobs' own timestamps.
Modules import their library inside functions: `oban_` runs under Python 3.12 from
`.venv-bench312/`, and the harness imports every module from the project venv.
"""
