"""The network zoo: NEON's randomly generated base networks, trained in parallel on Ray, stored with stable IDs."""
