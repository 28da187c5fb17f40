"""``python -m bench report``: results folder in, ``<out>/<experiment>/report.md`` + PNGs out.

``results`` reads the folder back, ``sections`` and ``note_study`` turn it into markdown
(with ``markdown`` helpers and ``stats``), ``figures`` draws the PNGs; ``command`` writes
them.
"""
