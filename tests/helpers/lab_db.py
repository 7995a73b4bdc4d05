"""SQL against a lab site's application database, for tests that check rows before and after."""

import psycopg2


def connect(lab, site="primary", timeout=5):
    pg = lab["sites"][site]["postgres"]
    conn = psycopg2.connect(host=pg["host"], port=pg["port"], user=pg["user"], password=pg["password"],
                            dbname=pg["database"], connect_timeout=timeout)
    conn.autocommit = True
    return conn


def query(lab, site, sql, args=None):
    """Rows of `sql` (None for a statement without a result), on a connection of its own."""
    conn = connect(lab, site)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()
