"""Sparse training: masks (``masks``), the method seam (``method``), the methods (``methods``) and their registry
(``registry``), the sparsifier that applies them (``sparsifier``), layer densities and schedules.

Import from the modules: ``distributions`` and ``schedules`` are pure Python, and the results reader uses
them without torch.
"""
