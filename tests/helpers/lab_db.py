"""SQL against a lab site's databases, for tests that check rows before and after: the one home
of "connect, run a statement, close" for the tests (tests.helpers.faults builds on it)."""

import psycopg2


def open_connection(host, port, user, password, database, timeout=5):
    conn = psycopg2.connect(host=host, port=port, user=user, password=password, dbname=database,
                            connect_timeout=timeout)
    conn.autocommit = True
    return conn


def connect(lab, site="primary", timeout=5):
    pg = lab["sites"][site]["postgres"]
    return open_connection(pg["host"], pg["port"], pg["user"], pg["password"], pg["database"], timeout)


def rows(conn, statement, args=None):
    """Rows of `statement` (None for a statement without a result); the connection is closed."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def query(lab, site, sql, args=None):
    """Rows of `sql` on a connection of its own to the site's application database."""
    return rows(connect(lab, site), sql, args)
