"""Domain logic. A service takes a SQLAlchemy session and its collaborators as arguments, never
imports Flask and never commits: the web request or the task that calls it owns the transaction."""
