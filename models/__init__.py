"""The PostgreSQL ledger: connection, schema migrations, the task model and its transitions."""
