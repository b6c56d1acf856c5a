"""cluster: provision and heal fleets of Kubernetes worker hosts on AWS."""

__version__ = "0.1.0"
