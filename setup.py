"""The one compiled piece of wsops: a histogram's counts in C (wsops/instrumentation/
_counting.c). Optional: without a C compiler the install goes on and wsops uses the same class
in Python (wsops/instrumentation/pycounts.py), a little slower per message. Everything else is
in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("wsops.instrumentation._counting",
                             ["wsops/instrumentation/_counting.c"], optional=True)])
