"""The database side of a service: an async SQLAlchemy engine, batched writes, migrations."""
