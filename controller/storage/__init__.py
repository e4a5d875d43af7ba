"""Storage: SQLAlchemy models, engines and migrations, and the queries, one module per table group.

``experiments`` (registration, frozen settings, phase), ``decisions`` (the append-only log),
``looks`` (the analysis state and its looks), ``rollups`` (window reads and the cap rebuild),
``partitions`` (observations' daily partitions). Every query function takes an
``sa.Connection`` and runs in the caller's transaction: callers own the unit of work.
Bulk loading of observations is ``controller.ingest``'s job.
"""
