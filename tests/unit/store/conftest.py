"""Store tests run on SQLite and on a throwaway PostgreSQL cluster."""

import dbfixtures

backend = dbfixtures.backend
db_url = dbfixtures.db_url
empty_db_url = dbfixtures.empty_db_url
pg = dbfixtures.pg
pg_template = dbfixtures.pg_template
