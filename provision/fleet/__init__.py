"""The host group as every verb sees it: one observation of the group with its hosts, each joined to its node."""
