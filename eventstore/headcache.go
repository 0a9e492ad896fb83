package eventstore

import (
	"hash/maphash"
	"sync"
)

// headCache remembers the heads of recently used streams. Every entry is a fact
// that cannot become false (the event at that version exists with that hash
// forever), so the cache needs no invalidation to stay correct; it is bounded
// by evicting an arbitrary entry of a full shard.
type headCache struct {
	seed     maphash.Seed
	perShard int
	shards   [headShards]headShard
}

const headShards = 16

type headShard struct {
	mu sync.Mutex
	m  map[Key]streamHead
}

func newHeadCache(size int) *headCache {
	c := &headCache{seed: maphash.MakeSeed(), perShard: max(1, size/headShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]streamHead)
	}
	return c
}

func (c *headCache) shard(k Key) *headShard {
	return &c.shards[maphash.Comparable(c.seed, k)%headShards]
}

func (c *headCache) get(k Key) (streamHead, bool) {
	sh := c.shard(k)
	sh.mu.Lock()
	h, ok := sh.m[k]
	sh.mu.Unlock()
	return h, ok
}

// put records h unless a later head of the stream is already known.
func (c *headCache) put(k Key, h streamHead) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[k]; ok {
		if old.version < h.version {
			sh.m[k] = h
		}
		return
	}
	if len(sh.m) >= c.perShard {
		for victim := range sh.m { // map order is random enough for eviction
			delete(sh.m, victim)
			break
		}
	}
	sh.m[k] = h
}

// drop forgets the stream's head if it is still the one at version v.
func (c *headCache) drop(k Key, v Version) {
	sh := c.shard(k)
	sh.mu.Lock()
	if old, ok := sh.m[k]; ok && old.version == v {
		delete(sh.m, k)
	}
	sh.mu.Unlock()
}
