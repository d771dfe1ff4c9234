"""The Faust stream processors: normalise, IoT rules, classify, geo-index, correlate."""
