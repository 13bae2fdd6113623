"""Clients as devices: who is sampled, who is eligible, who drops out or misbehaves.

- `sampling`: uniform, Poisson and cyclic client sampling, seeded per round.
- `population`: availability, dropout, device speed, deadlines, over-selection.
- `participation`: non-participants and clients that fail.
- `outliers`: clients that corrupt their labels or their updates.

Every draw is a pure function of the seed, the round and the client.
Modules are imported directly; the package re-exports nothing.
"""
