"""How client updates become one model update: the aggregator chain.

- `chain`: `build(ChainSettings)`, robust -> DP -> compression -> secure sum.
- `settings`: the aggregator and compression flags.
- `robust`: coordinate-wise median, trimmed mean, norm clipping.
- `compression`: quantisation, rotations, random masks, low rank, exact bits.
- `secure_sum`: Bonawitz et al. 2017 secure aggregation, simulated in numpy.
- `traffic`: bits down and up per client and round.

Modules are imported directly; the package re-exports nothing.
"""
