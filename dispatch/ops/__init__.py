"""The operations centre's live feed: state, fan-out, websocket."""
