"""CloudFormation-side data shipped in the wheel as ``provision.templates`` (read with importlib.resources)."""
