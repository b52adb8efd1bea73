"""Keeping tokens alive: the policy, leases on due connections, applying Meta's answers, the worker loop."""
