package wire

// Receipt is the JSON object of a read or delivered event on an inbox topic:
// user read (or a device of user acknowledged) conv up to seq.
type Receipt struct {
	Kind string `json:"kind"` // "read" or "delivered"
	Conv string `json:"conv"`
	User string `json:"user"`
	Seq  int64  `json:"seq"`
}
