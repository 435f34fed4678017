"""Reading pickles from untrusted archives without running code from them.

``pickle.load`` calls whatever callable a pickle names, so a tampered dataset archive could
run arbitrary code (``os.system`` and friends). The CIFAR "python version" batches need
only a handful of callables; :class:`RestrictedUnpickler` admits those and refuses the rest
before anything is called.

What a CIFAR batch holds: a dict with bytes keys whose values are lists of ints, lists of
bytes and one numpy uint8 array. The original files were written by Python 2 with protocol
2: their strings are plain opcodes (no callable), and the array is rebuilt through
``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2), ``numpy.ndarray`` and
``numpy.dtype``. Protocol-2 pickles written by Python 3 also spell ``bytes`` objects as
``_codecs.encode(text, "latin1")`` (or ``__builtin__.bytes()`` when empty).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from tvlars.data.errors import UnsafePickleError

try:  # numpy >= 2 moved the implementation; the old name stays valid in pickles
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of ``bytes`` use it, and nothing more:
    only the latin-1 codec, so that a pickle cannot reach any other codec module."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refused _codecs.encode with codec {encoding!r}")
    return text.encode("latin-1")


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): bytes,
    ("__builtin__", "bytes"): bytes,  # protocol 2 writes Python 2's module name
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names listed in ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {module}.{name} from a pickle: dataset pickles hold only "
                "plain data and numpy arrays. The file is corrupt or has been tampered with; "
                "replace it with a copy of the official archive."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refused a persistent id: dataset pickles have none")


def load_restricted(data: bytes, source: str = "pickle") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`, Python-2 strings as bytes.

    ``source`` names the file in error messages.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as error:
        raise UnsafePickleError(f"{source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise ValueError(
            f"{source}: not a readable dataset pickle ({error}); the file is truncated or "
            "corrupt: replace it with a copy of the official archive"
        ) from error
