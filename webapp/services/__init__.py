"""Domain logic. Services take `now` where time matters and raise typed errors; views stay thin."""
