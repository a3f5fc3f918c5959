"""Business rules. Services take the DB session first, may flush, never commit."""
