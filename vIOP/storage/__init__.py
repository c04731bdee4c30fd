"""Storage: everything that touches Redis, SQL or key material lives here."""
