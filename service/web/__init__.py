"""The web side: subscription pages, feeds over HTTP, health and metrics (FastAPI).

One more entry point beside the CLI and the scheduler: every route calls the same pipeline
methods they do, and holds no business logic of its own.
"""
