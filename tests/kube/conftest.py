"""Fixtures: an emulator served over HTTP and the official client configured for it."""

from __future__ import annotations

from tests import emulated

served = emulated.served  # fixtures
api = emulated.api
