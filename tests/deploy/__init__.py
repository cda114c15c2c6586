"""Deploy tests: Callboard against the platform's services as a PaaS (Heroku) provides them."""
