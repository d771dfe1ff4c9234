"""IoT telemetry into alarms: the rule engine as pure logic (streams/iot/rules.py), fed each
device's readings in the order they arrive and judged by the readings' own timestamps."""
