"""canaryctl's controller: spec, storage, ingestion, reconcile, routers, operator and CLI."""

__all__: list[str] = []
