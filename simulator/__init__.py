"""The simulator: makes and replays test days (built in a later step; see the README's road map)."""
