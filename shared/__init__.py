"""semcom common package: configuration, models, channel, codec stages, API stubs, telemetry."""
