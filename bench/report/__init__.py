"""``python -m bench report``: results folder in, ``<out>/<experiment>/report.md``,
``per_seed.csv`` and PNGs out.

``results`` reads the folder back, ``settings`` the reference and margin it is judged under,
``stats`` holds the tests (scipy.stats, statsmodels), ``verdicts`` applies them to an
experiment (identical runs merged, each budget against the reference, the best set),
``sections`` and ``note_study`` turn it into markdown (with ``markdown`` helpers), ``figures``
draws the PNGs; ``command`` writes them. ``simulation`` measures the rule's error rates.
"""
