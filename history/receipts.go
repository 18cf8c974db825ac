package history

import (
	"slices"
	"strings"
)

// Receipt is how far one member of a conversation got, as another member may
// know it: its read marker and, in direct conversations, the highest
// delivery cursor of any of its devices (the seq of the live delivered
// receipt; 0 when no device acknowledged anything).
type Receipt struct {
	User         string
	ReadSeq      int64
	DeliveredSeq int64
}

// Receipts is what Store.Receipts returns: the receipts of the other current
// members of Conv, by user. Hidden is set, with no Members, for a group
// larger than the groupMax the caller passed: its members do not see each
// other's read markers (see HideReceipts).
type Receipts struct {
	Conv    string
	Kind    string
	Hidden  bool
	Members []Receipt
}

// HideReceipts reports whether the members of a conversation of kind with
// members current members (the asking user included) see no read receipts of
// each other: a group of more than groupMax members. The live read events
// follow the same rule (send.Service.MarkRead with ReceiptGroupMax).
func HideReceipts(kind string, members, groupMax int) bool {
	return kind == KindGroup && members > groupMax
}

// ReceiptsCountLimit is how far a store counts a conversation's current
// members for Receipts with groupMax: one beyond the limit is enough to
// know the receipts are hidden (bounded, so that the addition cannot
// overflow).
func ReceiptsCountLimit(groupMax int) int {
	return min(max(groupMax, 0), 1<<30) + 1
}

// ReceiptsRule decides Store.Receipts of user in conv from what the store
// read: member is false when user is not a current member (never was, left,
// was removed, or no such conversation); members counts the current members.
// It returns whether the receipts are hidden (HideReceipts), or ENOTMEMBER.
func ReceiptsRule(conv, kind string, member bool, members, groupMax int) (hidden bool, err error) {
	if !member {
		return false, NotMember(conv)
	}
	return HideReceipts(kind, members, groupMax), nil
}

// SortReceipts sorts rs by user id in byte order, the order of Receipts
// whatever the store's collation.
func SortReceipts(rs []Receipt) {
	slices.SortFunc(rs, func(a, b Receipt) int { return strings.Compare(a.User, b.User) })
}
