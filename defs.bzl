"""Macros for the project's Python targets: one module a target, pytest tests.

Third-party packages are not Bazel targets (the workspace loads offline): they
come from requirements.txt via ./run.sh, and each target names them in a comment.
"""

def py_module(name, deps = [], data = [], **kwargs):
    """A py_library of the one module `<name>.py`."""
    native.py_library(
        name = name,
        srcs = [name + ".py"],
        srcs_version = "PY3",
        deps = deps,
        data = data,
        **kwargs
    )

def py_module_test(name, size = "small", deps = [], data = [], helpers = [], **kwargs):
    """A pytest module `<name>.py` (fixtures from //:conftest), run by ./run.sh test.

    `helpers`: other tests' files whose helpers this test imports (a test is no library).
    """
    native.py_test(
        name = name,
        size = size,
        srcs = [name + ".py"] + helpers,
        main = name + ".py",
        python_version = "PY3",
        srcs_version = "PY3",
        deps = deps,
        data = data,
        **kwargs
    )

def py_module_binary(name, deps = [], data = [], **kwargs):
    """The binary `python -m <package>.<name>` (its code in the `<name>_lib` target)."""
    native.py_binary(
        name = name,
        srcs = [name + ".py"],
        python_version = "PY3",
        srcs_version = "PY3",
        deps = deps,
        data = data,
        **kwargs
    )

def py_package(name, deps = [], **kwargs):
    """The package's `__init__.py`, which every module of the package depends on."""
    native.py_library(
        name = name,
        srcs = ["__init__.py"],
        srcs_version = "PY3",
        deps = deps,
        **kwargs
    )
