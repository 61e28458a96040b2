// Package transport lets every shard (Raft group) hosted by one node share a
// single TCP port.
//
// A [Mux] owns the node's Raft listener. [Mux.Layer] registers a shard and
// returns a [github.com/hashicorp/raft.StreamLayer] for it, to be passed as
// raft.NetworkTransportConfig.Stream; each shard keeps its own
// raft.NetworkTransport, connection pool and RPC handlers, so shards never
// block one another beyond sharing the socket buffers of the host.
// [Mux.Transport] does that and more: it returns the shard's raft.Transport,
// whose heartbeats travel to each peer together with every other shard's, in
// one write per batch (beats.go says why), which tells idle followers the
// commit index with a heartbeat (commit.go), which sends an append or a vote
// request again when its pooled connection turns out closed by the peer,
// and holds an append whose follower refuses connections, or closes them
// unanswered, until it takes it or a second has passed (stale.go), and
// which passes every RPC raft receives through an optional filter.
//
// # Wire format
//
// Every connection opened by a layer's Dial starts with a header, written
// before any Raft bytes:
//
//	+-------+---------------------------+
//	| 0xF1  | shard id: uvarint, 1-5 B  |
//	+-------+---------------------------+
//
// The first byte is the magic/version byte: its high nibble 0xF marks a
// frontdesk Raft mux connection, its low nibble is the header version (1).
// A later version takes a new value; a receiver rejects any value it does not
// know. The shard id is a uint32 in unsigned varint encoding
// (encoding/binary.AppendUvarint), minimal length, at most 5 bytes. Nothing
// is sent back: after the header the connection belongs to hashicorp/raft's
// NetworkTransport protocol unchanged. With [WithTLS] the header travels
// inside the TLS stream.
//
// A connection whose first byte is 0xF3 carries coalesced heartbeats (see
// beats.go and [Mux.Transport]): no shard id follows; the dialing side then
// sends msgpack values in triples (sequence number uint64, shard id uint32,
// raft.AppendEntriesRequest), many in one write, and the accepting side
// answers each with a triple (sequence number, error string — empty for
// none —, raft.AppendEntriesResponse), in any order. Only heartbeats are
// taken; anything else is answered with an error. With [WithQuiet], a triple
// whose shard id is 0xFFFFFFFF carries a quietBeat instead of a request and
// is answered with a quietAnswer; an answer with sequence number 0 is a
// quietAnswer nobody asked for (a replica withdrawing its promise). A node
// without quiet shards answers a quiet beat "shard not served" (quiet.go).
// The dialing side keeps one sender (a goroutine and the connection) per
// peer address, and retires it after a minute without a call, no promise
// held and nothing waiting ([Stats].PeersRetired), so an address no longer
// used (a node that left, or came back at another address) costs nothing.
//
// A connection whose first byte is 0xF2 is a watch connection ([Mux.WatchPeers]):
// no shard id follows and nothing more is sent either way; the accepting Mux
// holds it open until the peer or the Mux closes it. A node that dies closes
// it, and the watching node learns at once that the peer is gone (see
// watch.go and [Mux.OnPeerDown]).
//
// # Contract
//
//   - The accepting side reads the header under a deadline ([WithHeaderTimeout],
//     default 5s) in a goroutine per connection, so a slow or silent peer never
//     holds up other connections. A missing, malformed or late header closes
//     the connection (counted in [Stats].BadHeader, logged at warn).
//   - A connection for a shard that has no registered layer — not yet, or no
//     longer — is closed without a reply (counted in [Stats].UnknownShard,
//     logged at debug). Raft treats it as a failed RPC and retries, so peers
//     may start before every shard here is registered.
//   - Registering a shard that already has an open layer fails with
//     [ErrShardRegistered]. Closing a layer unregisters only its shard, which
//     may then be registered again.
//   - Closing a layer (raft.NetworkTransport.Close does) makes its pending and
//     future Accept calls and its Dial calls fail with [ErrClosed], and closes
//     every connection the layer accepted or dialed. Reads cut short by that
//     close return io.EOF, so raft's connection handlers exit quietly.
//   - [Mux.Close] closes the listener, connections still in their header,
//     and every layer, then waits for the Mux's goroutines to exit.
//   - All methods of Mux and of the layers are safe for concurrent use.
package transport
