"""HTML reports of ``wsops leaks``, ``loadtest``, ``drain`` and ``rollout`` (``--report``).

Each ``*report.render(data)`` turns the command's ``--json`` output into one self-contained
page (``page``) with inline SVG charts (``charts``): pure functions, so the page shows exactly
the numbers of the JSON. ``output`` holds what the commands share: the option, the command
line with its secrets hidden, writing the file.
"""
