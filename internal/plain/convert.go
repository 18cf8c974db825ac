package plain

import (
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// message returns publish pk of client in mochi's storable form.
func message(pk packets.Packet, client string) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		Client: client, Origin: pk.Origin, FixedHeader: pk.FixedHeader, TopicName: pk.TopicName, Payload: pk.Payload,
		Created: pk.Created, PacketID: pk.PacketID,
		Properties: storage.MessageProperties{
			PayloadFormat: props.PayloadFormat, PayloadFormatFlag: props.PayloadFormatFlag,
			MessageExpiryInterval: props.MessageExpiryInterval, ContentType: props.ContentType,
			ResponseTopic: props.ResponseTopic, CorrelationData: props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier, User: props.User,
		},
	}
}

// ClientProperties returns the CONNECT properties p of a client in mochi's
// storable form.
func ClientProperties(p packets.Properties) storage.ClientProperties {
	p = p.Copy(false)
	return storage.ClientProperties{
		SessionExpiryInterval: p.SessionExpiryInterval, SessionExpiryIntervalFlag: p.SessionExpiryIntervalFlag,
		AuthenticationMethod: p.AuthenticationMethod, AuthenticationData: p.AuthenticationData,
		RequestProblemInfo: p.RequestProblemInfo, RequestProblemInfoFlag: p.RequestProblemInfoFlag,
		RequestResponseInfo: p.RequestResponseInfo, ReceiveMaximum: p.ReceiveMaximum,
		TopicAliasMaximum: p.TopicAliasMaximum, User: p.User, MaximumPacketSize: p.MaximumPacketSize,
	}
}

// Properties is the inverse of ClientProperties.
func Properties(p storage.ClientProperties) packets.Properties {
	return packets.Properties{
		SessionExpiryInterval: p.SessionExpiryInterval, SessionExpiryIntervalFlag: p.SessionExpiryIntervalFlag,
		AuthenticationMethod: p.AuthenticationMethod, AuthenticationData: p.AuthenticationData,
		RequestProblemInfoFlag: p.RequestProblemInfoFlag, RequestProblemInfo: p.RequestProblemInfo,
		RequestResponseInfo: p.RequestResponseInfo, ReceiveMaximum: p.ReceiveMaximum,
		TopicAliasMaximum: p.TopicAliasMaximum, User: p.User, MaximumPacketSize: p.MaximumPacketSize,
	}
}
