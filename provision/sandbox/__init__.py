"""The local sandbox: moto's server as AWS, the Kubernetes API simulator as the cluster, and the host simulator that
joins the two, started in the background by `cluster sandbox start` and used by every verb with `--sandbox`."""
