"""AWS access: the session factory (``session``) and one typed facade per service."""
