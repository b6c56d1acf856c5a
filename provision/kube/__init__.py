"""The Kubernetes side, over lightkube: map hosts to nodes, cordon, drain through the Eviction API, and tell when the
drained pods run again elsewhere. Imported only by verbs that talk to Kubernetes."""
