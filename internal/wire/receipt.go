package wire

// Receipt is the JSON object of a read or delivered event on an inbox topic:
// user read (or a device of user acknowledged) conv up to seq.
type Receipt struct {
	Kind string `json:"kind"` // "read" or "delivered"
	Conv string `json:"conv"`
	User string `json:"user"`
	Seq  int64  `json:"seq"`
	// Unread and Mentions, on the read events that go to the reader's own
	// devices, are the reader's counts in conv after the marker moved.
	Unread   *int64 `json:"unread,omitempty"`
	Mentions *int64 `json:"mentions,omitempty"`
}

// SettingsEvent is the JSON object of a settings event on the inbox of the
// user whose settings of conv changed.
type SettingsEvent struct {
	Kind       string  `json:"kind"` // "settings"
	Conv       string  `json:"conv"`
	MutedUntil *string `json:"muted_until"`
	Archived   bool    `json:"archived"`
	Pinned     bool    `json:"pinned"`
}
