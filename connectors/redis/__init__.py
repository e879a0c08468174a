"""Redis: key layout, write-behind sinks (portfolios, token registry), metrics writer, embedded server."""
