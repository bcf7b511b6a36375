"""``torch.utils`` names: :mod:`scratchgen.utils.data`."""
from scratchgen.utils import data  # noqa: F401
