"""The restricted unpickler: plain data and numpy arrays load, anything else is refused."""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest

from tvlars.data import UnsafePickleError
from tvlars.data.safe_pickle import load_restricted


def cifar_like_batch() -> dict:
    return {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [6, 9, 0],
        b"data": np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072),
        b"filenames": [b"leptodactylus_pentadactylus_s_000004.png", b""],
    }


def test_a_protocol_2_batch_with_bytes_keys_loads_intact():
    loaded = load_restricted(pickle.dumps(cifar_like_batch(), protocol=2))
    assert loaded[b"labels"] == [6, 9, 0] and loaded[b"filenames"][1] == b""
    assert loaded[b"data"].dtype == np.uint8 and loaded[b"data"].shape == (3, 3072)
    assert np.array_equal(loaded[b"data"], cifar_like_batch()[b"data"])


def test_the_numpy_1_module_name_of_python_2_era_pickles_loads():
    # Files written by Python 2 / numpy 1 name numpy.core.multiarray._reconstruct.
    modern = pickle.dumps(cifar_like_batch(), protocol=2)
    legacy = modern.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != modern
    assert np.array_equal(load_restricted(legacy)[b"data"], cifar_like_batch()[b"data"])


def test_python_2_strings_load_as_bytes():
    # SHORT_BINSTRING 'U' opcodes, as Python 2 writes str: {b'key': b'value'}.
    python2_pickle = b"\x80\x02}q\x00U\x03keyq\x01U\x05valueq\x02s."
    assert load_restricted(python2_pickle) == {b"key": b"value"}


def test_os_system_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(UnsafePickleError, match="refused"):
        load_restricted(pickle.dumps(Exploit(), protocol=2))
    assert not marker.exists()


@pytest.mark.parametrize(
    "callable_",
    [eval, exec, getattr, __import__, subprocess.check_output, np.load],
    ids=lambda f: f.__name__,
)
def test_other_callables_are_refused(callable_):
    class Payload:
        def __reduce__(self):
            return callable_, ("1",)

    with pytest.raises(UnsafePickleError):
        load_restricted(pickle.dumps(Payload(), protocol=2))


def test_codecs_encode_is_admitted_for_latin1_only():
    smuggled = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_restricted(smuggled)


def test_the_error_names_the_source_file():
    class Payload:
        def __reduce__(self):
            return print, ("hi",)

    with pytest.raises(UnsafePickleError, match="data_batch_4"):
        load_restricted(pickle.dumps(Payload()), source="cifar10 data_batch_4")


def test_a_truncated_pickle_is_a_value_error_naming_corruption():
    data = pickle.dumps(cifar_like_batch(), protocol=2)
    with pytest.raises(ValueError, match="corrupt"):
        load_restricted(data[: len(data) // 2])
