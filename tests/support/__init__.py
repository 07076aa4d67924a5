"""Helpers shared by the test packages: waits, ports, processes, clients, scrapes, artifacts.

Import them from here (``tests.support.waits``...); fixtures stay in the conftest.py files.
"""
