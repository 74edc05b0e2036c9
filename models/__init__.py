"""Animators: photo + request in, frames / MP4 out. Nothing here knows about HTTP, Celery or SQL."""
