"""Agent identity: short-lived tokens, the agent registry, delegation and the kill switch."""
