"""Experiment reports: a typed view of the store (``view``), HTML/JSON/CSV (``render``), notebooks."""
