"""Simulated endoscope: the renderer (``scene``), a dataset writer, ``cct-sim`` (live topics or a
bag) and ``cct-demo`` (the demo graph of ``launch/demo.launch.py``, scored)."""
