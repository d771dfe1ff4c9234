"""IoT ingest: device registry, ThingsBoard-compatible HTTP and MQTT device APIs, vendor batch."""
