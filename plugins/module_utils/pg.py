# -*- coding: utf-8 -*-
# Copyright (c) 2026 AUDITRON SRE
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connections and facts, as plain Python.

Connection parameters use community.postgresql's option names (login_host, login_port,
login_user, login_password, login_unix_socket, ssl_mode, ca_cert, db) so a user's vars fit
both collections. Every failure becomes a DRError that names the server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import traceback

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.auditron.dr.plugins.module_utils.common import DRError, first_line


def server_label(params):
    host = params.get("login_unix_socket") or params.get("login_host") or "local socket"
    return "%s:%s" % (host, params.get("login_port") or 5432)


def conninfo(params, database=None):
    """libpq keyword arguments from community.postgresql-shaped params."""
    args = {
        "dbname": database or params.get("db") or params.get("login_db") or "postgres",
        "user": params.get("login_user") or "postgres",
        "port": int(params.get("login_port") or 5432),
        "connect_timeout": int(params.get("connect_timeout") or 10),
        "application_name": "auditron.dr",
    }
    host = params.get("login_unix_socket") or params.get("login_host")
    if host:
        args["host"] = host
    if params.get("login_password"):
        args["password"] = params["login_password"]
    if params.get("ssl_mode"):
        args["sslmode"] = params["ssl_mode"]
    if params.get("ca_cert"):
        args["sslrootcert"] = params["ca_cert"]
    return args


def libpq_env(params, database=None):
    """The same connection as PG* environment variables, for pg_dump, psql and friends: the
    password never appears on a command line."""
    args = conninfo(params, database)
    env = {"PGDATABASE": args["dbname"], "PGUSER": args["user"], "PGPORT": str(args["port"]),
           "PGCONNECT_TIMEOUT": str(args["connect_timeout"]), "PGAPPNAME": "auditron.dr"}
    if "host" in args:
        env["PGHOST"] = args["host"]
    if "password" in args:
        env["PGPASSWORD"] = args["password"]
    if "sslmode" in args:
        env["PGSSLMODE"] = args["sslmode"]
    if "sslrootcert" in args:
        env["PGSSLROOTCERT"] = args["sslrootcert"]
    merged = dict(os.environ)
    merged.update(env)
    return merged


def connect(params, database=None, autocommit=True):
    if not HAS_PSYCOPG2:
        raise DRError("the psycopg2 Python library is required to reach PostgreSQL")
    args = conninfo(params, database)
    try:
        conn = psycopg2.connect(**args)
    except psycopg2.Error as exc:
        raise DRError("database %s (%s@%s): %s" % (args["dbname"], args["user"], server_label(params),
                                                   _reason(exc)))
    conn.autocommit = autocommit
    return conn


def _reason(exc):
    text = first_line(exc)
    if "Connection refused" in str(exc):
        return "does not answer (connection refused)"
    if "password authentication failed" in text:
        return "password authentication failed"
    return text


def quote_ident(name):
    """Quote an identifier the way PostgreSQL does (doubling any quote): user-given table and
    column names are only ever used quoted, never pasted into SQL."""
    if name is None or name == "" or "\x00" in str(name):
        raise DRError("an empty or NUL-containing identifier is not a valid name: %r" % (name,))
    return '"%s"' % str(name).replace('"', '""')


def server_facts(conn):
    """Version, role, system identifier, database size: what preflight and manifests record."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                    "pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system()), "
                    "current_database(), pg_database_size(current_database())")
        version, version_num, in_recovery, system_id, database, size = cur.fetchone()
    return {"server_version": version, "server_version_num": version_num,
            "role": "standby" if in_recovery else "primary", "system_identifier": system_id,
            "database": database, "database_bytes": size}


def table_exists(conn, table, schema="public"):
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (quote_ident(schema) + "." + quote_ident(table),))
        return cur.fetchone()[0]
