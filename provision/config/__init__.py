"""The configuration file: its schema (``schema``), value types (``types``) and loader (``loader``)."""
