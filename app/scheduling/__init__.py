"""The scheduler: which waiting jobs get a slot, fairly between tenants and within limits.

Jobs wait in Postgres until admitted. An admission pass (`admission.py`) gives slots to the
waiting jobs, tenant by tenant in weighted fair order (`fair.py`), while the tenant, the
job's concurrency key and the room on the broker allow; an admitted job is sent and holds
its slot until it ends. The limits and pauses it obeys are in `limits.py` and `pauses.py`;
why a job still waits is in `reasons.py`.
"""
