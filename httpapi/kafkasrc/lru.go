package kafkasrc

import "container/list"

// lru holds values up to a byte budget, dropping the least recently used.
// It is not safe for concurrent use.
type lru struct {
	budget, size int64
	order        *list.List // front: most recent
	items        map[string]*list.Element
}

type lruEntry struct {
	key   string
	value []byte
}

func newLRU(budget int64) *lru {
	return &lru{budget: budget, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(key string) ([]byte, bool) {
	e, ok := c.items[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry).value, true
}

func (c *lru) add(key string, value []byte) {
	c.remove(key)
	if int64(len(value)) > c.budget {
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry{key: key, value: value})
	c.size += int64(len(value))
	for c.size > c.budget {
		c.remove(c.order.Back().Value.(*lruEntry).key)
	}
}

func (c *lru) remove(key string) {
	if e, ok := c.items[key]; ok {
		c.order.Remove(e)
		delete(c.items, key)
		c.size -= int64(len(e.Value.(*lruEntry).value))
	}
}
