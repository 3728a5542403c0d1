"""Kill switch benchmark: time to revoke across two processes (see __main__)."""
