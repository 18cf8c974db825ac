package send

import (
	"context"
	"sync"
	"time"

	"github.com/parley-im/parley/history"
)

// RelationTTL bounds how long a cached relation (blocks, shared group,
// who wrote) is trusted when no invalidation reached this node: it is the
// worst case for a block broadcast that NATS lost (core NATS is at most
// once), for a group change on another node, and for retention or account
// deletion changing who wrote in a direct conversation.
const RelationTTL = 10 * time.Second

// maxRelations bounds the cache: beyond it, it starts again empty.
const maxRelations = 200_000

// relations caches Privacy.Relation for the direct send path, so that a
// send does not wait for a store query. Entries are dropped:
//   - by ForgetRelation, when a block between the two users changed (on this
//     node through the REST API, on another through the cluster broadcast);
//   - all at once by ForgetRelations (an account deleted) and by any group
//     change seen by Groups (Groups.Forget, local or from the cluster),
//     since SharesGroup may have changed;
//   - by a direct message stored between two users who had not both written
//     yet (Started and Talked may have changed);
//   - after RelationTTL in any case.
//
// An answer read from the store is cached only if no invalidation happened
// while it was read (gen), so that a block racing with a cache fill is never
// hidden by the stale answer.
type relations struct {
	mu  sync.Mutex
	gen uint64 // bumped by every invalidation
	m   map[[2]string]relEntry
}

// relEntry is a cached relation between key[0] and key[1] (in that order:
// ABlocksB is key[0] blocking key[1]).
type relEntry struct {
	r      history.Relation
	until  time.Time
	groups uint64 // Groups.changes when read
}

// relKey orders a and b; swapped reports whether a came second.
func relKey(a, b string) (key [2]string, swapped bool) {
	if b < a {
		return [2]string{b, a}, true
	}
	return [2]string{a, b}, false
}

func flip(r history.Relation) history.Relation {
	r.ABlocksB, r.BBlocksA = r.BBlocksA, r.ABlocksB
	return r
}

// relation returns the relation of from to target, from the cache when
// fresh, else from p.
func (c *relations) relation(ctx context.Context, p history.Privacy, groups *Groups, from, target string) (history.Relation, error) {
	key, swapped := relKey(from, target)
	now := time.Now()
	gv := groups.changes.Load()
	c.mu.Lock()
	e, ok := c.m[key]
	gen := c.gen
	c.mu.Unlock()
	if ok && e.groups == gv && now.Before(e.until) {
		if swapped {
			return flip(e.r), nil
		}
		return e.r, nil
	}
	r, err := p.Relation(ctx, key[0], key[1])
	if err != nil {
		return r, err
	}
	c.mu.Lock()
	if c.gen == gen && groups.changes.Load() == gv {
		if c.m == nil || len(c.m) >= maxRelations {
			c.m = map[[2]string]relEntry{}
		}
		c.m[key] = relEntry{r: r, until: now.Add(RelationTTL), groups: gv}
	}
	c.mu.Unlock()
	if swapped {
		return flip(r), nil
	}
	return r, nil
}

// forget drops the relation of a and b.
func (c *relations) forget(a, b string) {
	key, _ := relKey(a, b)
	c.mu.Lock()
	c.gen++
	delete(c.m, key)
	c.mu.Unlock()
}

// forgetAll drops every relation.
func (c *relations) forgetAll() {
	c.mu.Lock()
	c.gen++
	c.m = nil
	c.mu.Unlock()
}

// stored notes a direct message stored from a to b: unless the two had both
// written already (Talked, which another message cannot change), the cached
// relation is dropped.
func (c *relations) stored(a, b string) {
	key, _ := relKey(a, b)
	c.mu.Lock()
	if e, ok := c.m[key]; !ok || !e.r.Talked {
		c.gen++
		delete(c.m, key)
	}
	c.mu.Unlock()
}

// ForgetRelation drops the cached relation of users a and b: call it when a
// block between them changed, on every node (broker wires it to the REST
// API and to the cluster's block broadcast).
func (m *Service) ForgetRelation(a, b string) { m.relations.forget(a, b) }

// ForgetRelations drops every cached relation (an account was deleted).
func (m *Service) ForgetRelations() { m.relations.forgetAll() }
