package shard

import "sync"

// notifier hands out a channel that is closed at the next notify: a
// broadcast that never blocks the notifier and never loses a wakeup for a
// waiter that took the channel before checking its condition.
type notifier struct {
	mu sync.Mutex
	ch chan struct{} // nil until someone waits
}

// wait returns the channel closed by the next notify.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// notify wakes every waiter.
func (n *notifier) notify() {
	n.mu.Lock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
	n.mu.Unlock()
}
