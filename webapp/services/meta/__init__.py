"""Meta's edge: the HTTP client with one deadline per call, typed errors, the classifier, signed requests."""
