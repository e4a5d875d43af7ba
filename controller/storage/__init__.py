"""Storage: SQLAlchemy models, engine set-up, migrations and the repository of queries."""
