"""The demo world: everything canaryctl needs to run with no cluster, and nothing the operator needs.

``kube/`` is a Kubernetes API emulator over real HTTP (kmock, aiohttp); ``world`` joins it to
the real operator, Postgres and a simulated clock; ``traffic`` draws each minute's requests
from ``analysis.simulate`` at the split the router reports; ``demo`` holds the scenarios of
``canaryctl demo``, and ``cli`` the command itself, a plugin that ``pyproject.toml`` registers
under the ``canaryctl.commands`` entry points. Installed with the ``[demo]`` extra. This package
may import the product (``controller``, ``analysis``); the product never imports it (an
import-linter contract).
"""
