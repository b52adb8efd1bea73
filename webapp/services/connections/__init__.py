"""A shop's Instagram connection: its state and transitions, linking, Meta's requests, diagnosis, checklist."""
