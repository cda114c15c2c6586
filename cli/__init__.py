"""``callboard``: the operator's command line, a thin client of the REST API."""
