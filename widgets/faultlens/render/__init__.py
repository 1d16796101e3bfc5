"""Widget-free rendering shared by the Explorer and the HTML report: colour encodings
(:mod:`.colors`), the map as a PNG (:mod:`.mapimage`) and static HTML fragments (:mod:`.html`).

Layering: this package may import ``analysis``, ``models``, ``data`` and ``store``, never ``ui`` or
``report`` (both of which import it).
"""
