"""rlpost: GRPO post-training for reasoning driving policies (see README.md)."""

from pathlib import Path as _Path

# Imported from a source checkout on sys.path, as in the working dir `ray job submit --working-dir .` uploads
# (Ray puts it first on PYTHONPATH), the folders pyproject.toml maps into this namespace (actors/, rewards/,
# curation/) sit beside this package, not inside it: search the checkout too, so `rlpost.actors` is the
# submitted code like the rest and not a mix with whatever is installed on the node.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "actors" / "__init__.py").is_file():
    __path__.append(str(_checkout))
