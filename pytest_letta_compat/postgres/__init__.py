"""PostgreSQL: the embedded throwaway cluster, and one client for any DSN."""
