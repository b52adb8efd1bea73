"""A built-in emulator of Instagram's OAuth and Graph endpoints, for local runs, demos and tests."""
