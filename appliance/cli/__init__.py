"""The ``appliance`` command line: one command group per module."""
