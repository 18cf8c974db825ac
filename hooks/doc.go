// Package hooks holds Parley's mochi-mqtt hooks and the services behind them:
// authentication and ACLs (Auth), the send pipeline with group management
// (Messenger), membership caching (Groups), rate limits and metrics. It
// depends on history for the domain and the store interface, and on mochi.
package hooks
