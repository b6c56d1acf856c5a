"""Host-side scripts shipped in the wheel as ``provision.userdata`` (jinja2 templates, read via importlib.resources)."""
