"""Metadata: SQLAlchemy models, the engine and sessions, and one store module per aggregate."""
