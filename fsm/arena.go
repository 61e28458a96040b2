package fsm

// byteArena is append-only storage for byte strings, in blocks of
// arenaBlockSize (a string larger than that gets a block of its own). The
// de-dup table and the store of ended sessions keep their keys and encoded
// values in one, so the collector has no pointer to follow per entry.
//
// Growing never moves what is stored: a table filling one slice that
// doubles copies everything it holds each time and touches fresh pages for
// it (W1 at 1,024 clients: 4.6% of the nodes' CPU was the de-dup table's
// growth; BENCHMARKS.md, fourteenth session). A stored string keeps its
// (block, offset) for life; whole blocks can be let go from the front.
type byteArena struct {
	blocks fifo[[]byte]
	first  uint64 // number of blocks.at(0)
}

const arenaBlockSize = 64 << 10

// alloc appends n bytes and returns where they are and the bytes to fill
// in.
func (a *byteArena) alloc(n int) (block uint64, off uint32, dst []byte) {
	last := a.blocks.len() - 1
	if last < 0 || cap(*a.blocks.ptr(last))-len(*a.blocks.ptr(last)) < n {
		a.blocks.push(make([]byte, 0, max(arenaBlockSize, n)))
		last++
	}
	b := a.blocks.ptr(last)
	o := len(*b)
	*b = (*b)[:o+n]
	return a.first + uint64(last), uint32(o), (*b)[o : o+n : o+n]
}

// at returns the n bytes stored at (block, off).
func (a *byteArena) at(block uint64, off, n uint32) []byte {
	return a.blocks.at(int(block - a.first))[off : off+n]
}

// end is the number of the block the last alloc used (first when none).
func (a *byteArena) end() uint64 { return a.first + uint64(max(a.blocks.len()-1, 0)) }

// dropBefore lets go of the blocks numbered below block.
func (a *byteArena) dropBefore(block uint64) {
	for a.first < block && a.blocks.len() > 0 {
		a.blocks.pop()
		a.first++
	}
}

// view is a copy of a that later allocs and drops of a do not change: the
// bytes stored so far stay readable through it (blocks are never written
// below their length).
func (a *byteArena) view() byteArena {
	v := byteArena{first: a.first}
	v.blocks.items = make([][]byte, a.blocks.len())
	for i := range v.blocks.items {
		b := a.blocks.at(i)
		v.blocks.items[i] = b[:len(b):len(b)]
	}
	return v
}

// chunkLen is how many values a chunk of a chunkList holds.
const chunkLen = 1024

// chunkList is an append-only sequence of values in chunks of chunkLen:
// like byteArena, growing never copies what it holds.
type chunkList[T any] struct {
	chunks [][]T
	n      int
}

func (c *chunkList[T]) len() int { return c.n }

// push appends v and returns its position.
func (c *chunkList[T]) push(v T) int {
	if c.n%chunkLen == 0 {
		c.chunks = append(c.chunks, make([]T, 0, chunkLen))
	}
	last := &c.chunks[len(c.chunks)-1]
	*last = append(*last, v)
	c.n++
	return c.n - 1
}

// at returns the address of the value at position i.
func (c *chunkList[T]) at(i int) *T { return &c.chunks[i/chunkLen][i%chunkLen] }

// view is a copy of c that later pushes to c do not change.
func (c *chunkList[T]) view() chunkList[T] {
	v := chunkList[T]{chunks: make([][]T, len(c.chunks)), n: c.n}
	for i, ch := range c.chunks {
		v.chunks[i] = ch[:len(ch):len(ch)]
	}
	return v
}
