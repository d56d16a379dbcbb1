"""The SDK's uses of OpenTelemetry's private names, each with its public fallback."""
