package fsm

// fifo is a slice-backed queue: push at the back, pop at the front, in order.
type fifo[T any] struct {
	items []T
	head  int
}

func (q *fifo[T]) len() int   { return len(q.items) - q.head }
func (q *fifo[T]) push(v T)   { q.items = append(q.items, v) }
func (q *fifo[T]) front() T   { return q.items[q.head] }
func (q *fifo[T]) at(i int) T { return q.items[q.head+i] }

// ptr returns the address of the i-th item, valid until the next push or
// pop.
func (q *fifo[T]) ptr(i int) *T { return &q.items[q.head+i] }

func (q *fifo[T]) pop() T {
	var zero T
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head > 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items = q.items[:n]
		q.head = 0
	}
	return v
}

// filter keeps the items for which keep is true, in order.
func (q *fifo[T]) filter(keep func(T) bool) {
	out := q.items[:0]
	for _, v := range q.items[q.head:] {
		if keep(v) {
			out = append(out, v)
		}
	}
	clear(q.items[len(out):])
	q.items = out
	q.head = 0
}

func (q *fifo[T]) reset() { q.items, q.head = nil, 0 }
