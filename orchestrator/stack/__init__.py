"""The local stack of `make up`: embedded Postgres, the real Triton server and the gateway."""
