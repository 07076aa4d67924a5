"""The one compiled piece of wsops: a histogram's counts and the bundled node observer's hooks
in C (wsops/instrumentation/_counting.c, _hooks.c). Optional: without a C compiler the install
goes on and wsops uses the same classes in Python (wsops/instrumentation/pycounts.py,
wsops/server/observe.py), a little slower per message. Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "wsops.instrumentation._counting",
    ["wsops/instrumentation/_module.c", "wsops/instrumentation/_counting.c",
     "wsops/instrumentation/_hooks.c"],
    depends=["wsops/instrumentation/_counting.h"], optional=True)])
