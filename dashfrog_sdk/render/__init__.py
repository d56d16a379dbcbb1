"""Pictures of one flow, from a :class:`~dashfrog_sdk.store.FlowDetail`.

* :func:`~dashfrog_sdk.render.timeline.timeline`: a ``rich`` tree (needs the ``cli`` extra);
* :func:`sequence_diagram` and :func:`flowchart`: Mermaid source text;
* :func:`markdown`: a dataflow document with the sequence diagram embedded.
"""

from __future__ import annotations

from dashfrog_sdk.render.markdown import markdown
from dashfrog_sdk.render.mermaid import flowchart, sequence_diagram

__all__ = ["flowchart", "markdown", "sequence_diagram"]
