"""The data layer: the database, repositories and the event publisher."""
