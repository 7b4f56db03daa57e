"""The metadata database: tables, migrations, and the queries the processes share."""
