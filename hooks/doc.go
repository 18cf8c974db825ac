// Package hooks holds Parley's mochi-mqtt hooks: thin adapters that turn
// mochi callbacks into calls on the engines under internal/. Auth hands
// CONNECTs, ACL checks, wills and SUBSCRIBEs to the auth.Authorizer; Publish
// hands sends and read markers to the send.Service and acks them after the
// commit; Delivery hands session events and acknowledgements to the
// delivery.Hub, which writes inbox deliveries through conn, a delivery.Conn
// over a mochi client; Plain hands the plain MQTT state and the cluster's
// plain traffic to internal/plain; Session applies plain session rules.
package hooks
