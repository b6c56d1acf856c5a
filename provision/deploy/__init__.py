"""Stack-level verbs: `up`, `status` and `down`, over the AWS facades."""
