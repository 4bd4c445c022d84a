"""Serving: an OpenAI-compatible HTTP API, the web playground and the reviewer pages (FastAPI)."""
