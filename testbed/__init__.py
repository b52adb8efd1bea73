"""What tests/ and bench/ both run against: a Meta stub that misbehaves like the real one, a bulk seeder
for fleets of due connections, the real server processes (gunicorn, honcho), a TCP proxy that cuts the
database."""
