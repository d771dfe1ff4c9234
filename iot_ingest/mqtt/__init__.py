"""MQTT 5 / 3.1.1 device gateway."""
