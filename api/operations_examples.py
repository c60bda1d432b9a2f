"""Examples of the routes for operators: liveness, readiness, metrics and the document itself."""

from __future__ import annotations

from api.examples import (
    example,
)

METRICS_TEXT = """# HELP orchestra_jobs Jobs by kind and status
# TYPE orchestra_jobs gauge
orchestra_jobs{kind="sleep",status="completed"} 12.0
orchestra_jobs{kind="echo",status="queued"} 3.0
# HELP orchestra_counts_age_seconds Seconds since the sweep counted jobs and commands by status
# TYPE orchestra_counts_age_seconds gauge
orchestra_counts_age_seconds 4.2
# HELP orchestra_job_run_seconds Run time of job attempts (generator start to outcome committed)
# TYPE orchestra_job_run_seconds histogram
orchestra_job_run_seconds_bucket{kind="sleep",le="2.5"} 2.0
orchestra_job_run_seconds_bucket{kind="sleep",le="5.0"} 12.0
orchestra_job_run_seconds_bucket{kind="sleep",le="+Inf"} 12.0
orchestra_job_run_seconds_count{kind="sleep"} 12.0
orchestra_job_run_seconds_sum{kind="sleep"} 36.41
"""

_OPERATIONS = {
    ("get", "/health/liveness"): {
        "responses": {"200": {"alive": example("The process runs", {"status": "alive"})}}
    },
    ("get", "/health/readiness"): {
        "responses": {
            "200": {
                "healthy": example(
                    "Every dependency answered in time",
                    {
                        "status": "healthy",
                        "checks": {"database": "ok", "redis": "ok", "broker": "ok"},
                    },
                )
            },
            "503": {
                "database_down": example(
                    "The failing checks are named",
                    {
                        "status": "unhealthy",
                        "failed": ["database"],
                        "checks": {
                            "database": "error: OperationalError",
                            "redis": "ok",
                            "broker": "ok",
                        },
                    },
                )
            },
        }
    },
    ("get", "/metrics"): {
        "responses": {"200": {"scrape": example("Prometheus text (an excerpt)", METRICS_TEXT)}}
    },
    ("get", "/api/v1/openapi.json"): {
        "responses": {
            "200": {
                "document": example(
                    "This document (cut short)",
                    {
                        "openapi": "3.0.3",
                        "info": {"title": "Orchestra", "version": "1.0.0"},
                        "paths": {
                            "/health/liveness": {
                                "get": {
                                    "summary": "Liveness",
                                    "responses": {"200": {"description": "alive"}},
                                }
                            }
                        },
                        "tags": [{"name": "Operations", "description": "Health, metrics ..."}],
                        "components": {
                            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
                        },
                    },
                )
            }
        }
    },
}


def operations() -> dict:
    """The examples of the operations routes (health, metrics, the document), by (method, path)."""
    return _OPERATIONS
