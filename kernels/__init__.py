"""Hot-path kernels, one module per backend, all with the same interface (see ``reference``).

Installed as ``scratchgen.kernels``; ``scratchgen.backend`` picks the module.
"""
