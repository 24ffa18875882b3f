"""The build produced both halves of the compiled core and the package imports."""

import switch_native

import switch


def test_native_module_is_the_built_crate() -> None:
    assert switch_native.__version__ == "0.1.0"
    assert switch.__version__ == "0.1.0"
