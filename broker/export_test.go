package broker

// WithClusterDropRate sets the share of deliveries from other nodes that a
// node drops, for tests that show losses are repaired.
func WithClusterDropRate(rate float64) func(*Options) {
	return func(o *Options) { o.clusterDropRate = rate }
}
