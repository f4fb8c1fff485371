"""The ``semcom`` command: run the services, send images, check health."""
