"""The Celery worker: task declarations, the per-process model cache, and maintenance (reconcile, purge)."""
