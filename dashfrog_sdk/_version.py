"""The package version, in a leaf module so that any module can import it without a circle.

Keep in step with ``version`` in pyproject.toml (tests/internals/test_import_graph.py checks both agree).
"""

from __future__ import annotations

__version__ = "0.1.0"
