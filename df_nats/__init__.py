"""df-nats: a NATS pub/sub driver family for Dragonflow."""
