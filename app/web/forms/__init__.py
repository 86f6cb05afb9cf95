"""Flask-WTF forms, one module per area. Every form carries a CSRF token."""
