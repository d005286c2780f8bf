__version__ = "0.1.0"

# acflow's dataclasses are created with their generated methods' compiled code kept between runs (half of what
# importing acflow costs otherwise): analyzer/_dataclass_cache.py
from ._dataclass_cache import install as _install_dataclass_cache  # noqa: E402

_install_dataclass_cache()
