"""A simulator of the part of the Kubernetes API that `cluster` uses, served over HTTP on 127.0.0.1.

It speaks the real API's paths, verbs and JSON, so real clients (lightkube, the official client) talk to it
unchanged; behind the API a scheduler, controllers and the PodDisruptionBudget rules of eviction move the pods the way
a real cluster would. Time is injected: the sandbox ticks it in real time, tests in virtual time.
"""
